"""rolecall."""
