"""Two-stage shutdown and the agent's named exit codes (leaving for a reboot: worker/reboot.py).

The first SIGTERM/SIGINT (or Ctrl+Break on Windows) stops claiming and lets the running job
finish within the grace period; past it the job is killed and its lease released so another
instance can take it at once. A second signal kills the job immediately.

Under the Windows service (worker/winservice.py) there is no signal to send: the service
host creates a named event, passes its name in ``ROLECALL_STOP_EVENT``, and sets it when the
service manager says stop or preshutdown. A thread here waits on it and asks for the same
first stage a SIGTERM does; past its deadline the host terminates the agent's Job Object.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
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
    REBOOT_FAILED = 7  # a step asked for a reboot and the reboot command failed


class Shutdown:
    def __init__(self, grace_s: float) -> None:
        self.grace_s = grace_s
        self.requested = threading.Event()
        self.forced = threading.Event()
        self._at = 0.0

    def install(self, stop_event: str | None = None) -> None:
        """Hear the signals (from the main thread only: Python's rule) and, when given,
        the service host's stop event."""
        if threading.current_thread() is threading.main_thread():
            sigs = [signal.SIGTERM, signal.SIGINT]
            if sys.platform == "win32":
                sigs.append(signal.SIGBREAK)
            for s in sigs:
                signal.signal(s, self._on_signal)
        if sys.platform == "win32":
            ignore_console_logoff(self.request)
        if stop_event:
            threading.Thread(
                target=self._wait_for_event, args=(stop_event,), name="stop-event", daemon=True
            ).start()

    def _wait_for_event(self, name: str) -> None:
        try:
            wait_for_named_event(name)
        except OSError as e:
            log.error("cannot wait for the service's stop event %s: %s", name, e)
            return
        self.request()

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


def wait_for_named_event(name: str) -> None:
    """Block until the named event (the service host's) is set."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes
    from ctypes import wintypes

    k32 = ctypes.WinDLL("kernel32", use_last_error=True)
    k32.OpenEventW.restype = wintypes.HANDLE
    k32.OpenEventW.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.LPCWSTR]
    k32.WaitForSingleObject.restype = wintypes.DWORD
    k32.WaitForSingleObject.argtypes = [wintypes.HANDLE, wintypes.DWORD]
    synchronize, infinite, wait_failed = 0x00100000, 0xFFFFFFFF, 0xFFFFFFFF
    handle = k32.OpenEventW(synchronize, False, name)
    if not handle:
        raise ctypes.WinError(ctypes.get_last_error())
    if k32.WaitForSingleObject(handle, infinite) == wait_failed:
        raise ctypes.WinError(ctypes.get_last_error())


#: the handler, kept alive: Windows calls it for the process's lifetime
_console_handlers: list[object] = []


def ignore_console_logoff(on_close: Callable[[], None]) -> None:
    """The agent and its jobs share a console (the service host gives the agent one); a
    console process's default handler exits on CTRL_LOGOFF_EVENT, which reaches services'
    console processes whenever anyone logs off. Logoff is ignored; close and shutdown ask for
    the graceful stop, like SIGTERM."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes
    from ctypes import wintypes

    ctrl_close, ctrl_logoff, ctrl_shutdown = 2, 5, 6

    def handler(event: int) -> bool:
        if event in (ctrl_close, ctrl_shutdown):
            on_close()
            return True
        return event == ctrl_logoff

    callback = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)(handler)
    if ctypes.windll.kernel32.SetConsoleCtrlHandler(callback, True):
        _console_handlers.append(callback)
