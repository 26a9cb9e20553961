"""rolecall: boot-time configuration for cloud instances that get lost and reimaged.

The version below is the one place it is written: the wheel takes it from here (pyproject.toml,
``[tool.hatch.version]``) and every agent reports it in its instance record.
"""

__version__ = "0.2.0"
