"""What this machine can tell about itself and its processes (worker/registration.py).

An agent that finds its instance name held by another agent on the same machine must tell a
dead predecessor (a SIGKILL, a crash, a reimage: take over at once) from a second agent that
is running (refuse). A process id alone cannot: ids are reused, after a reboot by anything.
So the holder records the operating system's boot, and on Linux the process's start time
settles it: a process that started after the holder's agent did is not the holder.
Elsewhere the answer is "unknown" and the caller watches the record instead.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path

from rolecall.worker import boottime

#: Two boot times (from uptime, on systems without a boot id) this close are the same boot.
_BOOT_TOLERANCE_S = 60
#: A process started this much after the agent start it recorded is another process.
_START_TOLERANCE_S = 2.0


class Process(str, Enum):
    GONE = "gone"
    RUNNING = "running"
    UNKNOWN = "unknown"


def host_name() -> str:
    return platform.node() or socket.gethostname() or "unknown"


def os_boot() -> str | None:
    """This boot of the operating system: Linux's random boot id, else ``boot@<epoch>``."""
    if sys.platform == "linux":
        try:
            return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
        except OSError:
            return None
    if sys.platform == "win32":
        booted = boottime.os_boot_time()
        return f"boot@{int(booted)}" if booted is not None else None
    return None


def same_boot(a: str | None, b: str | None) -> bool | None:
    """Whether two :func:`os_boot` values are one boot; None when either is unknown."""
    if not a or not b:
        return None
    if a.startswith("boot@") and b.startswith("boot@"):
        try:
            return abs(int(a[5:]) - int(b[5:])) <= _BOOT_TOLERANCE_S
        except ValueError:
            return None
    return a == b


def process(pid: int, agent_start: datetime) -> Process:
    """Whether the agent that recorded ``pid`` and ``agent_start`` (this boot, this host) is
    still running."""
    if pid == os.getpid():
        return Process.GONE  # our own id: whoever had it before us has ended
    if sys.platform != "linux":
        return Process.UNKNOWN
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return Process.GONE
    except OSError:
        return Process.UNKNOWN
    boot = boottime.os_boot_time()
    if boot is None:
        return Process.UNKNOWN
    fields = stat.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    if fields[0] in ("Z", "X"):
        return Process.GONE  # a zombie has ended; only its exit status is left
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    if started > agent_start.timestamp() + _START_TOLERANCE_S:
        return Process.GONE  # the id was reused by a process that started later
    return Process.RUNNING
