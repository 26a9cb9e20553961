"""Publishing a role's baseline, with optimistic concurrency, and telling live instances.

The baseline blob is written with If-Match on the version read (or create-only for the first
one), so two operators publishing at once cannot silently overwrite each other: the loser
re-reads and publishes on top, or, with ``expected_version``, fails. Live instances get a
``reconcile`` job on their own queue so they apply the change without a reboot; instances
that are down pick it up from the blob at their next boot anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from rolecall.controller.agents import find_release
from rolecall.controller.baseline_file import build_steps, load_spec
from rolecall.controller.fleet import list_instances, live_instances
from rolecall.controller.results import dispatch_view
from rolecall.controller.sender import send_wave
from rolecall.controller.signing import Signer, Stamp, job_data
from rolecall.controller.store import RunStore
from rolecall.schemas.agents import AgentRelease
from rolecall.schemas.base import utcnow
from rolecall.schemas.baseline import Baseline
from rolecall.schemas.errors import ConcurrencyConflict, ConfigError
from rolecall.schemas.jobs import DEFAULT_DEADLINE_S, JobEnvelope, Target
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, RunRecord, Wave
from rolecall.storage.clients import Storage
from rolecall.storage.documents import read_document, update_document


def current_baseline(storage: Storage, role: str) -> tuple[Baseline | None, str | None]:
    found = read_document(
        storage, storage.names.state_container, Names.baseline_blob(role), Baseline
    )
    return found if found is not None else (None, None)


def rollback_over(storage: Storage, role: str, above: int) -> int:
    """What a ``--rollback`` baseline replaces: the highest version the role's instances took.

    Versions only move forward (worker/forward.py): the next is one past the current version
    and any rollback it carried. When the baseline blob was lost (or an old copy put back),
    instances may have taken more than it says; a signed rollback reaching that is taken."""
    fleet = list_instances(storage, role)
    return max([above, *(s.baseline_high_water or s.baseline_version or 0 for s in fleet)])


def publish_baseline(
    storage: Storage,
    role: str,
    path: Path,
    *,
    issuer: str = "rolecall",
    expected_version: int | None = None,
    signer: Signer | None = None,
    sign: Callable[[Baseline], Baseline] | None = None,
    notify: bool = True,
    rollback: bool = False,
) -> tuple[Baseline, RunRecord]:
    """Publish the next version; ``signer`` signs it and the reconcile jobs (``sign``, when
    given, signs the baseline instead: tests use it to act between reading and writing).
    ``rollback``: see ``rollback_over``."""
    if sign is None:
        sign = signer.sign_baseline if signer is not None else (lambda b: b)
    spec = load_spec(path)
    # the pin first: an unpublished version is refused before anything is uploaded
    release = find_release(storage, spec.agent) if spec.agent is not None else None
    steps = build_steps(storage, spec, path.parent)

    def next_version(current: Baseline | None) -> Baseline:
        at = current.version if current is not None else 0
        above = max(at, current.rollback or 0) if current is not None else 0
        if expected_version is not None and at != expected_version:
            raise ConcurrencyConflict(
                f"baseline for {role} is at version {at}, not {expected_version}; "
                f"re-read it with `rolecall baseline show {role}`"
            )
        new = Baseline(
            role=role, version=above + 1, steps=steps, updated_at=utcnow(), issuer=issuer,
            agent=release.pin if release is not None else None,
            rollback=rollback_over(storage, role, above) if rollback else None,
        )  # fmt: skip
        if release is not None:
            _check_readable_by(release.release, new)
        return sign(new)

    baseline = update_document(
        storage,
        storage.names.state_container,
        Names.baseline_blob(role),
        Baseline,
        next_version,
        gave_up=f"baseline for {role} kept changing; try again",
    )
    run = _record_run(storage, baseline, notify=notify, issuer=issuer, stamp=Stamp(signer))
    return baseline, run


def _check_readable_by(release: AgentRelease, baseline: Baseline) -> None:
    """The pinned agent must be able to read the baseline that pins it, or it would refuse
    it after the upgrade."""
    need, speaks = baseline.required_version(), release.speaks
    if speaks.major != need.major or speaks < need:
        raise ConfigError(
            f"agent {release.version} speaks contract {speaks}; this baseline needs {need}, "
            "so that agent could not read it"
        )


def _record_run(
    storage: Storage,
    baseline: Baseline,
    *,
    notify: bool,
    issuer: str,
    stamp: Stamp,
) -> RunRecord:
    """A run record for the new version, with a reconcile job for each live instance."""
    now = utcnow()
    run_id = Names.baseline_run_id(baseline.role, baseline.version)
    live = live_instances(storage, baseline.role) if notify else []
    run = RunRecord(
        run_id=run_id,
        role=baseline.role,
        mode=RunMode.BASELINE,
        created_at=now,
        updated_at=now,
        issuer=issuer,
        description=f"baseline v{baseline.version} ({_steps(baseline)})",
        layout="split",
        total=len(live),
        dispatched=len(live),
        waves=[Wave(end=len(live), at=now)] if live else [],
    )
    jobs = [
        JobEnvelope(
            action="reconcile", job_id=Names.job_id(run_id, instance), run_id=run_id,
            role=baseline.role, target=Target(instance=instance), created_at=now,
            issuer=issuer, max_attempts=5, not_after=now + timedelta(seconds=DEFAULT_DEADLINE_S),
        )
        for instance in live
    ]  # fmt: skip
    send_wave(storage, [
        (storage.names.instance_queue(j.target.key), job_data(j), True) for j in jobs
    ], stamp)  # fmt: skip
    try:
        RunStore(storage).create(run, order=live)
    except ConcurrencyConflict:
        return RunStore(storage).get(run_id)  # an earlier publish of this version made it
    return run.model_copy(update={"targets": dispatch_view(run, live)})


def record_baseline_run(storage: Storage, role: str, run_id: str) -> None:
    """The run record of a published baseline version that has none (published before runs
    were recorded, or its record was lost): made only for a version that exists."""
    baseline, _ = current_baseline(storage, role)
    if baseline is None or (
        Names.baseline_run_id(role, baseline.version) != run_id
        and not any(Names.baseline_run_id(role, v) == run_id for v in range(1, baseline.version))
    ):
        return
    now = utcnow()
    run = RunRecord(
        run_id=run_id, role=role, mode=RunMode.BASELINE, created_at=now, updated_at=now,
        description="baseline (recorded from reports)", layout="split",
    )  # fmt: skip
    with contextlib.suppress(ConcurrencyConflict):
        RunStore(storage).create(run, order=[])


def _steps(baseline: Baseline) -> str:
    pinned = f", agent {baseline.agent.version}" if baseline.agent is not None else ""
    return f"{len(baseline.steps)} steps{pinned}"
