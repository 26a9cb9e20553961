"""``python -m rolecall``: how the launcher (rolecall/launch.py) starts an agent version."""

from rolecall.cli import main

main()
