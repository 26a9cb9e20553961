"""Run one job or baseline step as a child process: in its own process group on POSIX, in
its own Job Object on Windows (worker/jobobject.py).

The worker waits on the child in short slices, calling ``watch.tick()`` between them (lease
renewal, flushing completions) and asking ``watch.should_kill()``, and kills the *whole group*
(or job) on timeout, cancel or shutdown, so a script that spawned a sleeping grandchild does
not outlive its job. Killing has a grace stage (SIGTERM; Ctrl+Break on Windows) and every
wait in it is bounded. stdout and stderr go to files, not pipes: a chatty script can neither
fill a pipe and deadlock nor fill the agent's memory.
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
from typing import IO, Protocol

from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ExecutionError
from rolecall.worker import jobobject
from rolecall.worker.commands import Command


class Watch(Protocol):
    """What the wait loop asks of whoever runs the job (the agent's JobContext)."""

    def tick(self) -> None: ...

    def should_kill(self) -> bool: ...


class Unwatched:
    """A watch with no duties and no reason to kill (checks and tests)."""

    def tick(self) -> None:
        return None

    def should_kill(self) -> bool:
        return False


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
    command: Command,
    *,
    cwd: Path,
    stdout: IO[bytes],
    stderr: IO[bytes],
    env: Mapping[str, str],
    timeout_s: float,
    watch: Watch | None = None,
    slice_s: float = 0.5,
) -> ExecResult:
    """Run ``command`` to completion, timeout, or kill; output goes to the two files."""
    started, t0 = utcnow(), time.monotonic()
    child = _start(command, cwd=cwd, stdout=stdout, stderr=stderr, env=env)
    proc = child.proc
    timed_out = killed = False
    deadline = t0 + timeout_s
    watch = watch or Unwatched()
    with _ExitWatch(proc) as exited:
        while not exited.wait(max(0.01, min(slice_s, deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                timed_out = True
            elif watch.should_kill():
                killed = True
            if timed_out or killed:
                child.kill()
                break
            watch.tick()
    return ExecResult(
        exit_code=None if (timed_out or killed) else proc.returncode,
        timed_out=timed_out,
        killed=killed,
        started_at=started,
        finished_at=utcnow(),
        duration_s=round(time.monotonic() - t0, 3),
        lingering=child.finish(),
    )


def _start(
    command: Command, *, cwd: Path, stdout: IO[bytes], stderr: IO[bytes], env: Mapping[str, str]
) -> _PosixChild | _WindowsChild:
    windows = sys.platform == "win32"
    try:
        proc = subprocess.Popen(
            command.args,
            executable=command.executable,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=not windows,
            creationflags=jobobject.spawn_flags() if windows else 0,
        )
    except OSError as e:
        raise ExecutionError(f"cannot start {command.program!r}: {e.strerror or e}") from e
    except ValueError as e:  # a NUL in an argument or the environment: the job's, not ours
        raise ExecutionError(f"cannot start {command.program!r}: {e}") from e
    return _WindowsChild.contain(proc, command) if windows else _PosixChild(proc)


class _PosixChild:
    """The job's process group (the child leads a session of its own)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    def kill(self) -> None:
        kill_group(self.proc)

    def finish(self) -> bool:
        """Whether something of the job is still running; it is left alone, as systemd
        leaves it to the agent's cgroup."""
        return group_alive(self.proc.pid)


class _WindowsChild:
    """The job's Job Object: everything the job started, however deep."""

    def __init__(self, proc: subprocess.Popen[bytes], job: jobobject.JobObject) -> None:
        self.proc = proc
        self.job = job

    @classmethod
    def contain(cls, proc: subprocess.Popen[bytes], command: Command) -> _WindowsChild:
        """Put the suspended child in a new Job Object, then let it run."""
        job: jobobject.JobObject | None = None
        try:
            job = jobobject.JobObject.create()
            job.adopt(proc.pid)
            jobobject.resume_process(proc.pid)
        except OSError as e:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=_BOUNDED_WAIT_S)
            if job is not None:
                job.close()
            raise ExecutionError(f"cannot start {command.program!r} in a job object: {e}") from e
        _close_finished_jobs()
        return cls(proc, job)

    def kill(self, grace_s: float = 2.0) -> None:
        """Ctrl+Break to the job's process group, then terminate the whole job."""
        if jobobject.send_ctrl_break(self.proc.pid):
            end = time.monotonic() + grace_s
            while time.monotonic() < end and self.job.active_processes() > 0:
                time.sleep(0.05)
        self.job.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=_BOUNDED_WAIT_S)

    def finish(self) -> bool:
        """Whether something of the job is still running. Kept (its job open) until it
        ends or the agent does: the job's handle dies with the agent, and with it what the
        job left running, as systemd stops the agent's cgroup on Linux."""
        if self.job.active_processes() == 0:
            self.job.close()
            return False
        _lingering.append(self.job)
        return True


#: jobs whose processes outlived their main process: closed once empty (worker/jobobject.py)
_lingering: list[jobobject.JobObject] = []
#: longest the agent waits for a process it has just terminated to be reaped
_BOUNDED_WAIT_S = 10.0


def _close_finished_jobs() -> None:
    for job in [j for j in _lingering if j.active_processes() == 0]:
        job.close()
        _lingering.remove(job)


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
        raise OSError("POSIX only")
    _killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)
    # the group may hold grandchildren even after the leader exited
    _killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _killpg(pgid: int, sig: int) -> None:
    if sys.platform == "win32":
        raise OSError("POSIX only")
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """Whether any process is left in the job's process group (signal 0 probes, sends
    nothing)."""
    if sys.platform == "win32":
        raise OSError("POSIX only")
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
