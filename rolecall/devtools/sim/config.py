"""What a simulation runs: fleet shape, job mix and fault schedule."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SimConfig(BaseModel):
    instances: int = Field(default=6, ge=1, description="instances, spread over the roles")
    roles: int = Field(default=2, ge=1, le=26)
    jobs: int = Field(default=60, ge=1, description="one-of-N (--any) jobs to enqueue")
    each_runs: int = Field(default=3, ge=0, description="--each runs across a whole role")
    failing: int = Field(default=2, ge=0, description="jobs designed to fail every attempt")
    malformed: int = Field(default=2, ge=0, description="messages designed to be poisoned")
    baseline_steps: int = Field(default=2, ge=0)
    baseline_change: bool = Field(default=True, description="publish v2 of one role mid-run")
    enqueue_s: float = Field(default=10.0, gt=0, description="spread enqueues over this time")
    job_sleep_max_s: float = Field(default=1.0, ge=0, description="jobs sleep 0..this")
    reimage_every_s: float = Field(default=4.0, ge=0, description="0: no reimages")
    kill_every_s: float = Field(default=0.0, ge=0, description="plain crashes (disk kept)")
    azurite_restarts: int = Field(default=0, ge=0, description="graceful restarts, mid-run")
    fault_rate: float = Field(default=0.05, ge=0, le=0.5)
    lease_s: int = Field(default=5, ge=2)
    max_attempts: int = Field(default=10, ge=1)
    converge_timeout_s: float = Field(default=180.0, gt=0)
    seed: int = 1
    older_agent: str | None = Field(
        default=None,
        description="a `rolecall` command of another (older) version: every other instance "
        "runs it, a mixed fleet as images lag",
    )

    @property
    def role_names(self) -> list[str]:
        return [f"role{chr(ord('a') + i)}" for i in range(self.roles)]

    def instance_names(self) -> list[tuple[str, str]]:
        roles = self.role_names
        return [
            (roles[i % len(roles)], f"{roles[i % len(roles)]}-{i}") for i in range(self.instances)
        ]


SMALL = SimConfig(
    instances=4, roles=2, jobs=30, each_runs=2, failing=1, malformed=2, baseline_steps=2,
    enqueue_s=6, job_sleep_max_s=0.8, reimage_every_s=2.5, fault_rate=0.05,
)  # fmt: skip

LARGE = SimConfig(
    instances=20, roles=3, jobs=1000, each_runs=6, failing=5, malformed=5, baseline_steps=3,
    enqueue_s=60, job_sleep_max_s=0.5, reimage_every_s=3.0, kill_every_s=7.0,
    azurite_restarts=1, fault_rate=0.10, converge_timeout_s=600,
)  # fmt: skip
