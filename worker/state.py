"""The instance's local state: its incarnation and what that incarnation has applied.

The state directory stands for the instance's disk. If it is missing or empty, this is a new
incarnation (first boot, or a reimage that reverted the disk to the base image) and every
marker is gone, so the baseline is applied again: cloud-init's per-instance semaphore idea.
A plain restart keeps the directory and re-applies nothing.

Writes are atomic (temp file + rename) so a SIGKILL never leaves a half-written marker; they
are not fsync'd, so a power cut may lose the last marker, which costs at most one re-run of an
idempotent job (the same as a crash just before writing it).

The directory is the agent's alone: mode 0700 on POSIX; on Windows a protected DACL the
agent sets itself, and files someone else owns are removed at start (worker/winacl.py).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolecall.schemas.base import utcnow
from rolecall.worker.boottime import os_boot_time, rebooted_since
from rolecall.worker.markers import JobMarkers
from rolecall.worker.winacl import secure_state_dir

log = logging.getLogger(__name__)


def atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def make_private_dir(path: Path) -> Path:
    """Create ``path`` readable and writable by the agent's user only (on Windows the
    protected DACL of the state directory above it is inherited)."""
    path.mkdir(parents=True, exist_ok=True)
    if sys.platform != "win32":
        path.chmod(0o700)
    return path


@dataclass(frozen=True)
class StepMark:
    status: str  # "done" | "pending_reboot"
    boot: str  # the agent start that recorded it
    #: the OS boot it was recorded in (None: recorded by an agent before boot times)
    boot_time: float | None = None


class LocalState:
    def __init__(self, root: Path, boot_time_source: Path | None = None) -> None:
        self.root = root
        self.new_incarnation = False
        self.incarnation = ""
        #: identifies this agent start
        self.boot = f"{time.time_ns():x}"
        #: when the OS booted: a step pending reboot completes in a later boot
        self.os_boot = os_boot_time(boot_time_source)
        self.markers = JobMarkers(root)
        self._cancelled: set[str] | None = None

    def open(self) -> LocalState:
        if sys.platform == "win32":
            for path in secure_state_dir(self.root):
                log.warning("removed %s: owned by someone other than the agent", path)
        make_private_dir(self.root)
        for sub in ("steps", "outbox", "cache", "work"):
            make_private_dir(self.root / sub)
        self.markers.open()
        inc = self.root / "incarnation"
        if inc.exists():
            self.incarnation = inc.read_text().strip()
        if not self.incarnation:
            self.incarnation = f"{utcnow():%Y%m%d%H%M%S}-{secrets.token_hex(4)}"
            self.new_incarnation = True
            atomic_write(inc, self.incarnation.encode())
        return self

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    # --- job markers (worker/markers.py) ------------------------------------------------

    def job_result(self, job_id: str) -> dict[str, Any] | None:
        """The completion this incarnation recorded for ``job_id``, if it ran it."""
        return self.markers.get(job_id)

    def mark_job(self, job_id: str, completion: dict[str, Any]) -> None:
        self.markers.mark(job_id, completion)

    # --- cancelled runs -----------------------------------------------------------------

    @property
    def cancelled_runs(self) -> set[str]:
        """Runs cancelled while this incarnation ran: their jobs are refused. Kept across
        restarts (a re-delivered job of a cancelled run must not run after one)."""
        if self._cancelled is None:
            try:
                self._cancelled = set(json.loads((self.root / "cancelled.json").read_bytes()))
            except (FileNotFoundError, ValueError, TypeError):
                self._cancelled = set()
        return self._cancelled

    def cancel_run(self, run_id: str) -> None:
        runs = self.cancelled_runs
        runs.add(run_id)
        # a run id is ~24 bytes: a list of the last thousand is a small file
        atomic_write(self.root / "cancelled.json", json.dumps(sorted(runs)[-1000:]).encode())

    # --- baseline step markers -----------------------------------------------------------

    def step_mark(self, fingerprint: str) -> StepMark | None:
        try:
            data = json.loads((self.root / "steps" / fingerprint).read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return StepMark(status=data["status"], boot=data["boot"], boot_time=data.get("boot_time"))

    def mark_step(self, fingerprint: str, status: str) -> None:
        body = {"status": status, "boot": self.boot, "boot_time": self.os_boot}
        atomic_write(self.root / "steps" / fingerprint, json.dumps(body).encode())

    def rebooted_since(self, mark: StepMark) -> bool:
        """Whether the OS has booted again since ``mark`` was recorded. Marks from agents
        before boot times (or a machine whose boot time cannot be read) fall back on agent
        starts, as those agents decided."""
        rebooted = rebooted_since(mark.boot_time, self.os_boot)
        return mark.boot != self.boot if rebooted is None else rebooted

    @property
    def baseline_version(self) -> int | None:
        try:
            return int((self.root / "baseline_version").read_text())
        except (FileNotFoundError, ValueError):
            return None

    @baseline_version.setter
    def baseline_version(self, version: int) -> None:
        atomic_write(self.root / "baseline_version", str(version).encode())

    @property
    def baseline_high_water(self) -> int | None:
        """The highest baseline version taken (worker/forward.py)."""
        try:
            return int((self.root / "baseline_high_water").read_text())
        except (FileNotFoundError, ValueError):
            return None

    @baseline_high_water.setter
    def baseline_high_water(self, version: int) -> None:
        atomic_write(self.root / "baseline_high_water", str(version).encode())
