"""When the operating system booted: what "the reboot happened" is decided by.

A baseline step that asks for a reboot is marked pending with the boot it ran in; it counts
as done once the agent runs in a later boot. Comparing agent starts instead (as before) made
a reboot command that failed, or an agent restarted for any other reason, look like a
reboot: the step was marked done on a machine that never rebooted.

Linux: ``btime`` in /proc/stat (seconds since the epoch). Windows: now minus
``GetTickCount64``. Both are derived from the wall clock when read, so two reads in one boot
can differ by a second of rounding; ``SLACK_S`` absorbs that. A wall clock stepped by more
than that between the step and the agent's next start, without a reboot, would read as a
reboot: the one case this cannot tell apart. Read once per agent start, never per job.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

#: how far two reads of one boot's time may differ
SLACK_S = 2.0
PROC_STAT = Path("/proc/stat")


def parse_btime(proc_stat: str) -> int | None:
    for line in proc_stat.splitlines():
        if line.startswith("btime "):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def os_boot_time(source: Path | None = None) -> float | None:
    """The OS boot time in seconds since the epoch, or None if it cannot be read.

    ``source``: a file in /proc/stat's format to read instead (a simulated machine)."""
    if source is None and sys.platform == "win32":
        return _windows_boot_time()
    try:
        text = (source or PROC_STAT).read_text()
    except OSError:
        return None
    btime = parse_btime(text)
    return float(btime) if btime is not None else None


def rebooted_since(recorded: float | None, current: float | None) -> bool | None:
    """Whether the OS booted again since a boot time was recorded; None if either is
    unknown (the caller falls back on what it knew before boot times were recorded)."""
    if recorded is None or current is None:
        return None
    return abs(current - recorded) > SLACK_S


def _windows_boot_time() -> float:
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes

    get_tick_count = ctypes.windll.kernel32.GetTickCount64
    get_tick_count.restype = ctypes.c_uint64
    return round(time.time() - float(get_tick_count()) / 1000.0, 3)
