"""Stands in for writing the site's configuration."""

import os

print(f"site {os.environ['SITE_NAME']} configured on {os.environ['ROLECALL_INSTANCE']}")
