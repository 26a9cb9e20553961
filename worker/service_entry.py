"""What the service manager runs: ``"<base python.exe>" -I -S "<this file>"``.

The service manager must talk to the process it started, and a virtual environment's
python.exe is a launcher that runs the base interpreter as a child, so the service runs the
base interpreter itself, isolated (-I) and without the base installation's site-packages
(-S), and this file adds the agent's own site-packages (``.pth`` files included: pywin32
finds its DLLs through one) before importing anything from it.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path


def main() -> int:
    # <site-packages>/rolecall/worker/service_entry.py; not resolved: in a source checkout
    # rolecall/worker is a symlink, and its target's parents are not site-packages
    site.addsitedir(str(Path(__file__).absolute().parents[2]))
    from rolecall.worker.winservice import serve

    return serve()


if __name__ == "__main__":
    sys.exit(main())
