"""Retrying a run: a new run of the same job for the targets that did not succeed, as SSM
Run Command's "rerun on failed targets".

A new run, not the old one reopened: the old record stays what happened, the new one has job
ids of its own (so no instance mistakes a retry for a re-delivery it already ran) and says
whose retry it is in its description. The job is the old run's template with a fresh creation
time, the same delivery deadline *span* (a deadline that had passed would expire every
retried target; the default 7 days for a run from before every job had one), and a new
signature and send time from whoever retries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from rolecall.controller.dispatch import parse_limit
from rolecall.controller.runs import launch
from rolecall.controller.store import RunStore, new_run_id
from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.jobs import DEFAULT_DEADLINE_S
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, RunRecord, TargetState
from rolecall.storage.clients import Storage

if TYPE_CHECKING:
    from rolecall.controller.signing import Signer

FAILED = frozenset(
    {TargetState.FAILED, TargetState.TIMED_OUT, TargetState.REJECTED, TargetState.EXPIRED}
)
NOT_DISPATCHED = frozenset({TargetState.NOT_DISPATCHED})


@dataclass(frozen=True)
class RetryRequest:
    run_id: str
    failed: bool = False
    not_dispatched: bool = False
    instances: tuple[str, ...] = ()
    max_concurrency: str | None = None
    max_errors: str | None = None
    issuer: str = "rolecall"

    def states(self) -> frozenset[TargetState]:
        return (FAILED if self.failed else frozenset()) | (
            NOT_DISPATCHED if self.not_dispatched else frozenset()
        )

    def what(self) -> str:
        return " or ".join(
            w for w, on in (("failed", self.failed), ("not-dispatched", self.not_dispatched)) if on
        )


def retry_run(storage: Storage, req: RetryRequest, signer: Signer | None) -> RunRecord:
    """Start the retry; ConfigError when there is nothing (or nothing retryable) to retry."""
    if not req.states():
        raise ConfigError("choose what to retry: --failed, --not-dispatched, or both")
    old = RunStore(storage).get(req.run_id)
    if old.template is None:
        raise ConfigError(
            f"{req.run_id} is a baseline run: an instance retries its failing step by itself "
            "(every 5 minutes, or at once when its agent restarts); publish a fixed baseline "
            "with `rolecall baseline set`"
            if old.mode is RunMode.BASELINE
            else f"{req.run_id} has no job to send again (it was recorded from events)"
        )
    keys = [k for k, t in old.targets.items() if t.state in req.states()]
    if req.instances:
        missing = sorted(set(req.instances) - set(old.targets))
        if missing:
            raise ConfigError(f"run {req.run_id} has no target {', '.join(map(repr, missing))}")
        keys = [k for k in keys if k in req.instances]
    if not keys:
        states = ", ".join(sorted({t.state.value for t in old.targets.values()})) or "none"
        raise ConfigError(f"run {req.run_id} has no {req.what()} targets to retry ({states})")
    return launch(storage, _retry_record(old, keys, req), keys, signer)


def _retry_record(old: RunRecord, keys: list[str], req: RetryRequest) -> RunRecord:
    assert old.template is not None
    now = utcnow()
    run_id = new_run_id(now)
    t = old.template
    # a run from before every job had a deadline gets the default one
    span = (t.not_after - t.created_at) if t.not_after else timedelta(seconds=DEFAULT_DEADLINE_S)
    template = t.model_copy(
        update={
            "run_id": run_id, "job_id": Names.job_id(run_id, "template"), "created_at": now,
            "not_after": now + max(span, timedelta(seconds=1)),
            "issuer": req.issuer, "signature": None,
        }
    )  # fmt: skip
    try:
        max_concurrency = parse_limit(req.max_concurrency, len(keys))
        max_errors = parse_limit(req.max_errors, len(keys))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return RunRecord(
        run_id=run_id, role=old.role, mode=old.mode, created_at=now, updated_at=now,
        issuer=req.issuer, description=f"retry of {old.run_id} ({req.what()}): "
        f"{old.description}"[:500], template=template, layout="split", total=len(keys),
        max_concurrency=max_concurrency if req.max_concurrency else old.max_concurrency,
        max_errors=max_errors if req.max_errors is not None else old.max_errors,
    )  # fmt: skip
