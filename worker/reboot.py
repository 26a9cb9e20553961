"""Rebooting the machine when a step or a job asks for it (exit 3010, 194 or 1641).

The reboot command is an operator's string, split into an argv here: on Windows without
POSIX escapes (``shlex`` in POSIX mode turns ``C:\\Windows\\System32\\shutdown.exe`` into
``C:WindowsSystem32shutdown.exe``), and a bare program name is taken from System32, never
from PATH. Its exit code is checked: a reboot command that failed is reported and the agent
exits with ``REBOOT_FAILED`` (the service manager starts it again, and the step still
pending in this boot asks for the reboot again), never with ``REBOOTING``, which tells the
service manager to leave the agent stopped.

Exit 1641 means an installer has already started the reboot: the agent does not start a
second one; it waits for the stop that shutdown brings, and runs its own command only if
none comes within ``REBOOT_WAIT_S``.
"""

from __future__ import annotations

import logging
import ntpath
import os
import shlex
import subprocess
import sys

from rolecall.worker.shutdown import ExitCode, Shutdown

log = logging.getLogger(__name__)

#: how long to wait for a reboot an installer said it started (exit 1641)
REBOOT_WAIT_S = 600.0
#: how long the reboot command itself may take (shutdown.exe and systemctl return at once)
COMMAND_TIMEOUT_S = 120.0


def reboot_argv(
    command: str,
    platform: str = sys.platform,
    system_root: str | None = None,
) -> list[str]:
    """The argv for the configured reboot command on ``platform``."""
    if platform != "win32":
        return shlex.split(command, posix=True)
    argv = [_unquote(t) for t in shlex.split(command, posix=False)]
    if argv and not ntpath.dirname(argv[0]):
        root = system_root or os.environ.get("SYSTEMROOT", r"C:\Windows")
        argv[0] = ntpath.join(root, "System32", argv[0])
    return argv


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == token[-1] and token[0] in "\"'":
        return token[1:-1]
    return token


def reboot(command: str, installer_started: bool, shutdown: Shutdown) -> ExitCode:
    """Run the reboot command (or wait for the installer's reboot); the agent's exit code."""
    if installer_started:
        log.warning("an installer has started a reboot (exit 1641); waiting for it")
        if shutdown.wait(REBOOT_WAIT_S):
            return ExitCode.REBOOTING
        log.warning("no reboot within %gs of exit 1641; rebooting ourselves", REBOOT_WAIT_S)
    argv = reboot_argv(command)
    log.warning("rebooting: %s", subprocess.list2cmdline(argv))
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        log.error("the reboot command failed to run: %s", e)
        return ExitCode.REBOOT_FAILED
    if done.returncode != 0:
        said = (done.stderr or done.stdout).decode("utf-8", "replace").strip()[-500:]
        log.error("the reboot command exited with %d: %s", done.returncode, said)
        return ExitCode.REBOOT_FAILED
    return ExitCode.REBOOTING
