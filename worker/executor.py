"""Run one job or baseline step as a child process, in its own process group.

The worker waits on the child in short slices, calling ``watch.tick()`` between them (lease
renewal, flushing completions) and asking ``watch.should_kill()``, and kills the *whole group*
on timeout, so a script that spawned a sleeping grandchild does not outlive its job. stdout and
stderr go to files, not pipes: a chatty script can neither fill a pipe and deadlock nor fill
the agent's memory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ExecutionError
from rolecall.schemas.jobs import Interpreter

#: Exit codes that mean "succeeded, reboot before continuing" (as in AWS SSM).
REBOOT_EXIT_CODES = frozenset({3010, 194})

_BY_EXTENSION_POSIX = {
    ".sh": Interpreter.SH,
    ".bash": Interpreter.BASH,
    ".py": Interpreter.PYTHON,
    ".ps1": Interpreter.PWSH,
}
_BY_EXTENSION_WINDOWS = {
    ".ps1": Interpreter.POWERSHELL,
    ".cmd": Interpreter.CMD,
    ".bat": Interpreter.CMD,
    ".py": Interpreter.PYTHON,
    ".sh": Interpreter.BASH,
}

#: Environment the agent must not hand to jobs: its own storage credentials.
_PRIVATE_ENV_PREFIXES = ("ROLECALL_", "AZURE_STORAGE_", "AZURE_CLIENT_SECRET")


class Watch(Protocol):
    """What the wait loop asks of whoever runs the job (the agent's JobContext)."""

    def tick(self) -> None: ...

    def should_kill(self) -> bool: ...


class _Unwatched:
    def tick(self) -> None:
        return None

    def should_kill(self) -> bool:
        return False


def choose_interpreter(
    filename: str, requested: Interpreter, platform: str = sys.platform
) -> Interpreter:
    if requested is not Interpreter.AUTO:
        return requested
    table = _BY_EXTENSION_WINDOWS if platform == "win32" else _BY_EXTENSION_POSIX
    return table.get(Path(filename).suffix.lower(), Interpreter.EXEC)


def build_command(
    script: Path, interpreter: Interpreter, args: list[str], platform: str = sys.platform
) -> list[str]:
    """The argv that runs ``script`` with ``interpreter`` on ``platform``."""
    s = str(script)
    match interpreter:
        case Interpreter.SH:
            return ["sh", s, *args]
        case Interpreter.BASH:
            return ["bash", s, *args]
        case Interpreter.PYTHON:
            return [sys.executable, s, *args]
        case Interpreter.POWERSHELL | Interpreter.PWSH:
            exe = "powershell" if interpreter is Interpreter.POWERSHELL else "pwsh"
            flags = ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
            return [exe, *flags, s, *args]
        case Interpreter.CMD:
            return ["cmd.exe", "/d", "/c", s, *args]
        case _:
            if platform != "win32":
                script.chmod(script.stat().st_mode | 0o100)
            return [s, *args]


def base_environment() -> dict[str, str]:
    """The agent's environment minus its own credentials; computed once per agent."""
    return {k: v for k, v in os.environ.items() if not k.upper().startswith(_PRIVATE_ENV_PREFIXES)}


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    timed_out: bool
    killed: bool  # stopped by the agent's shutdown, not by its own doing
    started_at: datetime
    finished_at: datetime
    duration_s: float
    #: some process the job started may still be running (and holding its output files)
    lingering: bool


def run(
    command: list[str],
    *,
    cwd: Path,
    stdout: BinaryIO,
    stderr: BinaryIO,
    env: Mapping[str, str],
    timeout_s: float,
    watch: Watch | None = None,
    slice_s: float = 0.5,
) -> ExecResult:
    """Run ``command`` to completion, timeout, or kill; output goes to the two files."""
    started, t0 = utcnow(), time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=sys.platform != "win32",
            creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0),
        )
    except OSError as e:
        raise ExecutionError(f"cannot start {command[0]!r}: {e.strerror or e}") from e
    timed_out = killed = False
    deadline = t0 + timeout_s
    watch = watch or _Unwatched()
    with _ExitWatch(proc) as exited:
        while not exited.wait(max(0.01, min(slice_s, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                timed_out = True
            elif watch.should_kill():
                killed = True
            if timed_out or killed:
                kill_group(proc)
                break
            watch.tick()
    return ExecResult(
        exit_code=None if (timed_out or killed) else proc.returncode,
        timed_out=timed_out,
        killed=killed,
        started_at=started,
        finished_at=utcnow(),
        duration_s=round(time.monotonic() - t0, 3),
        lingering=group_alive(proc.pid),
    )


class _ExitWatch:
    """Wait for a child's exit without polling where the OS allows it.

    ``Popen.wait(timeout)`` on POSIX sleeps in growing steps, so a 3 ms job is noticed late;
    a pidfd (Linux 5.3+) wakes us the moment the child exits. Elsewhere (Windows waits on
    the process handle natively) ``Popen.wait`` is used.
    """

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.fd: int | None = None
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.fd = pidfd_open(proc.pid)
            except OSError:
                self.fd = None

    def __enter__(self) -> _ExitWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)

    def wait(self, timeout: float) -> bool:
        """True once the child has exited (and been reaped)."""
        if self.fd is not None:
            import select

            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                return False
            self.proc.wait()
            return True
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


def kill_group(proc: subprocess.Popen[bytes], grace_s: float = 2.0) -> None:
    """Terminate the child's whole process group; SIGKILL whatever survives ``grace_s``."""
    if sys.platform == "win32":
        subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(proc.pid)],
            capture_output=True,
            check=False,
        )
        proc.wait()
        return
    _killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # the group may hold grandchildren even after the leader exited
    _killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the job's process group (signal 0 probes, sends
    nothing). Windows has no process groups to ask: assume something may be left."""
    if sys.platform == "win32":
        return True
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
