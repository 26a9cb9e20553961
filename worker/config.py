"""The worker's settings: who it is, where its disk state lives, and its timing policy.

Defaults are chosen for an idle fleet that costs little (two queues polled at most once a
minute, a heartbeat every minute, so a dead instance reads ``lost`` within 2.5 minutes) and a
busy one that is as fast as the bare SDK (batches
of 32, completions batched into one events message). Everything is overridable by flag,
``ROLECALL_<FIELD>`` environment variable or config-file key (``schemas/settings.py``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic import Field, field_validator

from rolecall.schemas.settings import StorageSettings
from rolecall.storage.osnet import INSTANCE_METADATA_HOST


def default_state_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "rolecall"
    return Path("/var/lib/rolecall")


class WorkerSettings(StorageSettings):
    role: str | None = None
    instance: str | None = None
    state_dir: Path = Field(default_factory=default_state_dir)

    # identity from Azure instance metadata (VM name, the `rolecall-role` tag)
    use_imds: bool = False
    imds_endpoint: str = f"http://{INSTANCE_METADATA_HOST}"

    #: a new incarnation (first boot, reimage) waits up to this long, at random, before its
    #: first storage call, so instances reimaged together spread their load
    boot_jitter_s: float = Field(default=5.0, ge=0, le=600)

    #: the deployment created every queue and container (Bicep, `rolecall sas worker`): the
    #: agent creates nothing at boot, not even its own two queues
    provisioned: bool = False

    # claiming
    lease_s: int = Field(default=60, ge=2, le=3600)
    batch: int = Field(default=32, ge=1, le=32)
    poll_min_s: float = Field(default=0.1, gt=0)
    poll_max_s: float = Field(default=60.0, gt=0)
    flush_s: float = Field(
        default=1.0, ge=0,
        description="longest a finished job's completion waits to share an events message",
    )  # fmt: skip

    # liveness and baseline
    #: one blob put each: 60 s is 43,830 puts a month per instance (docs/worker.md, costs)
    heartbeat_s: float = Field(default=60.0, gt=0)
    baseline_retry_s: float = Field(default=300.0, gt=0)

    # failures
    retry_delay_s: int = Field(default=10, ge=0, le=3600)
    grace_s: float = Field(default=30.0, ge=0)
    reboot_command: str | None = None
    #: read the OS boot time from this file (a /proc/stat-style ``btime <epoch>`` line)
    #: instead of the OS: for simulated machines, whose "reboot" is a restart
    boot_time_file: Path | None = None
    #: the Windows service host's stop event (worker/winservice.py sets it, not operators)
    stop_event: str | None = None

    # payload limits
    payload_max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    extract_max_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    extract_max_members: int = Field(default=20000, gt=0)

    # trust: from the environment a JSON list, ROLECALL_TRUSTED_KEYS='["/etc/rolecall/a.pub"]'
    trusted_keys: list[Path] = Field(default_factory=list)
    #: run unsigned jobs when no key is trusted (development only); without it and without a
    #: trusted key the agent refuses to start
    accept_unsigned: bool = False
    #: how far a job's signed send time may be from its message's insertion time (the send's
    #: latency plus the controller's clock error); further is refused as ``replayed``
    replay_window_s: float = Field(default=120.0, ge=5, le=3600)
    #: the role's sealing key (``rolecall keys seal-generate``): opens jobs' sealed secrets
    sealing_key: Path | None = None

    # observability (log_level and log_format are shared: schemas/settings.py)
    stats_file: Path | None = None

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        """Jobs run in a directory of their own, so a relative ``--state-dir ./disk`` would
        name a different place for them than for the agent."""
        return v.expanduser().absolute()
