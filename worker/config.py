"""The worker's settings: who it is, where its disk state lives, and its timing policy.

Defaults are chosen for an idle fleet that costs little (two queues polled at most once a
minute, a heartbeat every 10 minutes) and a busy one that is as fast as the bare SDK (batches
of 32, completions batched into one events message). Everything is overridable by flag,
``ROLECALL_*`` environment variable or the config file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pydantic import Field

from rolecall.schemas.settings import StorageSettings, env_alias


def default_state_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "rolecall"
    return Path("/var/lib/rolecall")


class WorkerSettings(StorageSettings):
    role: str | None = Field(default=None, validation_alias=env_alias("role"))
    instance: str | None = Field(default=None, validation_alias=env_alias("instance"))
    state_dir: Path = Field(
        default_factory=default_state_dir, validation_alias=env_alias("state_dir")
    )

    # identity from Azure instance metadata (VM name, the `rolecall-role` tag)
    use_imds: bool = Field(default=False, validation_alias=env_alias("use_imds"))
    imds_endpoint: str = Field(
        default="http://169.254.169.254", validation_alias=env_alias("imds_endpoint")
    )

    # claiming
    lease_s: int = Field(default=60, ge=2, le=3600, validation_alias=env_alias("lease_s"))
    batch: int = Field(default=32, ge=1, le=32, validation_alias=env_alias("batch"))
    poll_min_s: float = Field(default=0.1, gt=0, validation_alias=env_alias("poll_min_s"))
    poll_max_s: float = Field(default=60.0, gt=0, validation_alias=env_alias("poll_max_s"))
    flush_s: float = Field(
        default=1.0, ge=0, validation_alias=env_alias("flush_s"),
        description="longest a finished job's completion waits to share an events message",
    )  # fmt: skip

    # liveness and baseline
    heartbeat_s: float = Field(default=600.0, gt=0, validation_alias=env_alias("heartbeat_s"))
    baseline_retry_s: float = Field(
        default=300.0, gt=0, validation_alias=env_alias("baseline_retry_s")
    )

    # failures
    retry_delay_s: int = Field(
        default=10, ge=0, le=3600, validation_alias=env_alias("retry_delay_s")
    )
    grace_s: float = Field(default=30.0, ge=0, validation_alias=env_alias("grace_s"))
    reboot_command: str | None = Field(default=None, validation_alias=env_alias("reboot_command"))

    # payload limits
    payload_max_bytes: int = Field(
        default=256 * 1024 * 1024, gt=0, validation_alias=env_alias("payload_max_bytes")
    )
    extract_max_bytes: int = Field(
        default=1024 * 1024 * 1024, gt=0, validation_alias=env_alias("extract_max_bytes")
    )
    extract_max_members: int = Field(
        default=20000, gt=0, validation_alias=env_alias("extract_max_members")
    )

    # trust
    trusted_keys: list[Path] = Field(
        default_factory=list, validation_alias=env_alias("trusted_keys")
    )

    # observability
    log_level: str = Field(default="INFO", validation_alias=env_alias("log_level"))
    stats_file: Path | None = Field(default=None, validation_alias=env_alias("stats_file"))
