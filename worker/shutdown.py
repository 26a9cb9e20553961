"""Two-stage shutdown, the agent's named exit codes, and leaving for a reboot.

The first SIGTERM/SIGINT (or Ctrl+Break on Windows) stops claiming and lets the running job
finish within the grace period; past it the job is killed and its lease released so another
instance can take it at once. A second signal kills the job immediately.
"""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
from enum import IntEnum
from types import FrameType

log = logging.getLogger("rolecall.worker")


class ExitCode(IntEnum):
    OK = 0
    CONFIG = 2  # settings are wrong: fix them, restarting will not help
    ACCESS_DENIED = 3  # credentials refused at start
    FORCED = 4  # a second signal cut the shutdown short
    REBOOTING = 5  # a step asked for a reboot and the reboot command was run
    #: a newer agent version is installed beside this one and recorded as current: start
    #: again (the service manager does; rolecall/launch.py then starts the new version)
    UPGRADING = 6


class Shutdown:
    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.requested = threading.Event()
        self.forced = threading.Event()
        self._at = 0.0

    def install(self) -> None:
        sigs = [signal.SIGTERM, signal.SIGINT]
        if sys.platform == "win32":
            sigs.append(signal.SIGBREAK)
        for s in sigs:
            signal.signal(s, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            self.forced.set()
        else:
            self._at = time.monotonic()
            self.requested.set()

    def request(self) -> None:
        self._on_signal(signal.SIGTERM, None)

    @property
    def stopping(self) -> bool:
        return self.requested.is_set()

    def should_kill_job(self) -> bool:
        """A running job is killed on a second signal or when the grace period is over."""
        if self.forced.is_set():
            return True
        return self.requested.is_set() and time.monotonic() - self._at >= self.grace_s

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if shutdown was requested meanwhile."""
        return self.requested.wait(max(0.0, seconds))


def reboot(command: str) -> ExitCode:
    """Run the reboot command a step asked for (the agent has settled what it held)."""
    log.warning("rebooting: %s", command)
    subprocess.run(shlex.split(command, posix=True), check=False)
    return ExitCode.REBOOTING
