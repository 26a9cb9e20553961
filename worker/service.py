"""The Windows service's decisions, apart from the Windows calls that carry them out
(worker/winservice.py), so that they are tested on Linux.

The service ``rolecall-worker`` is a small host: it runs a command (the agent, or the
launcher that picks which installed agent version to run) as a child in a kill-on-close Job
Object, sends the child's output to a rotated log, and translates the service manager's
stop and preshutdown into the agent's drain: it sets a named event whose name the child
received in ``ROLECALL_STOP_EVENT`` (worker/shutdown.py), reports progress while the agent
finishes its job within ``grace_s``, releases its leases and posts what it owes, and
terminates the Job Object only past the deadline. An agent that exits unasked (a crash, a
refused credential) makes the service stop with an error, and the service manager's
recovery actions start it again, as ``Restart=always`` does on Linux; exit 5 (the agent ran
the reboot command) stops it cleanly.
"""

from __future__ import annotations

import ntpath
import os
import threading
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from rolecall.worker.shutdown import ExitCode

SERVICE_NAME = "rolecall-worker"
DISPLAY_NAME = "rolecall worker"
DESCRIPTION = "rolecall: applies this instance's role baseline and runs its jobs"
#: what the host adds to the agent's drain (release leases, post the outbox, record STOPPED),
#: as the Linux unit's TimeoutStopSec=120 does to a 30 s grace
DRAIN_MARGIN_S = 90.0
#: restart 10 s after any unasked exit, as the Linux unit does; the count resets daily
RESTART_DELAY_MS = 10_000
RESET_PERIOD_S = 24 * 3600
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_KEEP = 5
STOP_EVENT_VAR = "ROLECALL_STOP_EVENT"


class StartType(str, Enum):
    AUTO = "auto"
    #: an image: setup's own reboots must not start the agent; SetupComplete.cmd enables it
    DISABLED = "disabled"


@dataclass(frozen=True)
class ServiceConfig:
    """What ``rolecall service install`` registers, whatever is registered now."""

    image_path: str
    start: StartType
    #: the service's Parameters key: what the host runs and where its settings and logs are
    parameters: dict[str, str | int]
    preshutdown_timeout_ms: int
    restart_delays_ms: tuple[int, ...] = (RESTART_DELAY_MS,) * 3
    reset_period_s: int = RESET_PERIOD_S
    #: recovery also when the service stops with an error, not only when it crashes
    failure_actions_on_non_crash: bool = True
    name: str = SERVICE_NAME
    display_name: str = DISPLAY_NAME
    description: str = DESCRIPTION


def quote(path: str) -> str:
    return f'"{path}"'


def service_config(
    *,
    base_python: str,
    host_script: str,
    command: str,
    data_dir: str,
    grace_s: float,
    for_image: bool,
    launcher: str | None = None,
) -> ServiceConfig:
    """The service for an agent installed at ``host_script``'s site-packages, or (with
    ``launcher``) for a side-by-side install whose launcher (rolecall/launch.py) picks the
    version both the host and the agent are loaded from.

    The service manager must talk to the process it started, so the image path is the base
    interpreter itself (a virtual environment's python.exe is a launcher that starts it as a
    child): running the launcher with ``--service``, or the host file with ``-I -S``
    (nothing from the environment or the base installation's site-packages; the host adds
    the agent's own)."""
    stop_timeout = stop_deadline_s(grace_s)
    if launcher is not None:
        image = f"{quote(base_python)} -I {quote(launcher)} --service"
        command = f"{quote(base_python)} -I {quote(launcher)} worker"
    else:
        image = f"{quote(base_python)} -I -S {quote(host_script)}"
    return ServiceConfig(
        image_path=image,
        start=StartType.DISABLED if for_image else StartType.AUTO,
        parameters={
            "Command": command,
            "EnvFile": ntpath.join(data_dir, "worker.env"),
            "LogDir": ntpath.join(data_dir, "logs"),
            "StopTimeoutSeconds": int(stop_timeout),
        },
        preshutdown_timeout_ms=int((stop_timeout + 15) * 1000),
    )


def stop_deadline_s(grace_s: float) -> float:
    return grace_s + DRAIN_MARGIN_S


class AfterExit(str, Enum):
    STOPPED = "stopped"  # report SERVICE_STOPPED, no error: nothing restarts it
    FAILED = "failed"  # stop with an error: the recovery actions restart it


def after_agent_exit(code: int | None, stop_requested: bool) -> AfterExit:
    if stop_requested or code in (ExitCode.OK, ExitCode.REBOOTING):
        return AfterExit.STOPPED
    return AfterExit.FAILED


def parse_env_file(text: str) -> dict[str, str | None]:
    """worker.env: ``KEY=VALUE`` lines, ``#`` comments, one pair of outer quotes removed,
    as systemd's EnvironmentFile= and run-worker.ps1 read it. An empty value (None here)
    removes the variable."""
    out: dict[str, str | None] = {}
    for raw in text.lstrip("\ufeff").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = (part.strip() for part in line.split("=", 1))
        if not name:
            continue
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[name] = value or None
    return out


def child_environment(
    base: dict[str, str], settings: dict[str, str | None], stop_event: str
) -> dict[str, str]:
    env = dict(base)
    for name, value in settings.items():
        for existing in [k for k in env if k.upper() == name.upper()]:
            del env[existing]
        if value is not None:
            env[name] = value
    env[STOP_EVENT_VAR] = stop_event
    return env


def grace_of(settings: dict[str, str | None], default: float = 30.0) -> float:
    try:
        return float(settings.get("ROLECALL_GRACE_S") or default)
    except ValueError:
        return default


@dataclass
class RotatingLog:
    """The agent's output as the service host writes it: ``worker.log``, rotated to
    ``worker.1.log`` … at ``max_bytes`` and at every start, ``keep`` old files kept."""

    path: Path
    max_bytes: int = LOG_MAX_BYTES
    keep: int = LOG_KEEP
    _file: BinaryIO | None = field(default=None, repr=False)
    _size: int = 0
    #: the output pump and the host's own notes write from two threads
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def open(self) -> RotatingLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() and self.path.stat().st_size > 0:
            self._rotate()
        self._file = self.path.open("ab")
        self._size = 0
        return self

    def write(self, data: bytes) -> None:
        with self._lock:
            if self._file is None:
                return  # closed: the host is done
            if self._size and self._size + len(data) > self.max_bytes:
                self._file.close()
                self._rotate()
                self._file = self.path.open("ab")
                self._size = 0
            self._file.write(data)
            self._file.flush()
            self._size += len(data)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.stem}.{n}{self.path.suffix}")

    def _rotate(self) -> None:
        self.rotated(self.keep).unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            if self.rotated(n).exists():
                os.replace(self.rotated(n), self.rotated(n + 1))
        os.replace(self.path, self.rotated(1))
