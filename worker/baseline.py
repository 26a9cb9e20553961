"""Applying the role's baseline: the ordered steps every incarnation must have run.

Read at every agent start and on a ``reconcile`` job; needs only the storage account, never a
controller. Each step is remembered by fingerprint in the local state, so a restart re-runs
nothing and a reimage (state wiped) re-runs everything. A failed step stops the baseline (steps
are ordered; later ones may depend on it) and the agent retries the baseline later.

A step that exits with a reboot code (3010 Windows, 194 Linux) is recorded as done-pending-
reboot; with a reboot command configured the agent runs it and exits, and the remaining
steps continue at the next agent start. Without one, the step counts as done at once.
"""

from __future__ import annotations

import logging
from enum import Enum

from rolecall.schemas.base import utcnow
from rolecall.schemas.baseline import Baseline, Step
from rolecall.schemas.codec import decode_document
from rolecall.schemas.errors import ContractError, NotFound, RolecallError, StorageError
from rolecall.schemas.events import Completion, Outcome
from rolecall.schemas.names import Names, name_key
from rolecall.storage.clients import Storage
from rolecall.worker.context import JobContext
from rolecall.worker.identity import Identity
from rolecall.worker.outbox import Outbox
from rolecall.worker.runner import Runner, Work
from rolecall.worker.state import LocalState
from rolecall.worker.trust import Verify

log = logging.getLogger(__name__)


class BaselineStatus(str, Enum):
    APPLIED = "applied"
    NONE = "none"  # no baseline published for the role
    FAILED = "failed"  # a step failed or the baseline was refused: retry in minutes
    UNREADABLE = "unreadable"  # storage did not answer: retry in seconds, backing off
    REBOOT = "reboot"  # waiting for a reboot before the next step


class BaselineApplier:
    def __init__(
        self,
        *,
        storage: Storage,
        identity: Identity,
        state: LocalState,
        runner: Runner,
        outbox: Outbox,
        verify: Verify,
        reboot_command: str | None,
        watch: JobContext,
    ) -> None:
        self.storage = storage
        self.identity = identity
        self.state = state
        self.runner = runner
        self.outbox = outbox
        self.verify = verify
        self.reboot_command = reboot_command
        self.watch = watch
        self.version: int | None = state.baseline_version
        self.signed_by: str | None = None
        self.reboot_requested = False

    def fetch(self) -> Baseline | None:
        path = Names.baseline_blob(self.identity.role)
        try:
            raw = self.storage.get_blob(self.storage.names.state_container, path).data
        except NotFound:
            return None
        baseline = decode_document(raw, Baseline)
        self.signed_by = self.verify(raw, False)
        if baseline.role != self.identity.role:
            raise ContractError(f"baseline at {path} is for role {baseline.role!r}")
        return baseline

    def apply(self) -> BaselineStatus:
        try:
            baseline = self.fetch()
        except StorageError as e:
            log.warning("cannot read the baseline yet: %s", e)
            return BaselineStatus.UNREADABLE
        except RolecallError as e:
            log.error("baseline refused: %s", e.message)
            return BaselineStatus.FAILED
        if baseline is None:
            log.info("no baseline published for role %s", self.identity.role)
            return BaselineStatus.NONE
        for index in range(len(baseline.steps)):
            status = self._step(baseline, index)
            if status is not BaselineStatus.APPLIED:
                return status
        if self.version != baseline.version:
            log.info("baseline v%d applied", baseline.version)
        self.version = baseline.version
        self.state.baseline_version = baseline.version
        return BaselineStatus.APPLIED

    def _step(self, baseline: Baseline, index: int) -> BaselineStatus:
        step = baseline.steps[index]
        mark = self.state.step_mark(step.fingerprint)
        run_id = Names.baseline_run_id(baseline.role, baseline.version)
        job_id = f"{run_id}.{name_key(self.identity.instance)}.s{index}"
        if mark is not None and mark.status == "done":
            if self.version != baseline.version:
                # done under an earlier version: say so, so this version's run shows it
                self._report(baseline, index, job_id, Outcome.SUCCEEDED, replayed=True)
            return BaselineStatus.APPLIED
        if mark is not None and mark.status == "pending_reboot":
            if mark.boot == self.state.boot:
                return BaselineStatus.REBOOT
            self.state.mark_step(step.fingerprint, "done")  # we have rebooted since
            return BaselineStatus.APPLIED

        work = Work(run_id, job_id, 1, step.payload, step.execution, step.timeout_s)
        ctx = {"run_id": run_id, "job_id": job_id, "step": index}
        log.info("applying baseline step %r", step.name, extra=ctx)
        try:
            done = self.runner.run(work, self.watch)
        except RolecallError as e:
            self._report(baseline, index, job_id, Outcome.REJECTED, reason=f"{e.reason}: {e}")
            return BaselineStatus.FAILED
        r = done.result
        if r.killed:
            return BaselineStatus.FAILED
        outcome = done.outcome(step.reboot)
        # marked before it is reported: a crash in between re-reports the step at the next
        # start (as done under a version not yet recorded) instead of running it again
        status = self._mark(step, outcome)
        self._report(baseline, index, job_id, outcome, **done.completion_fields())
        log.info("baseline step finished", extra={**ctx, "outcome": outcome.value})
        return status

    def _mark(self, step: Step, outcome: Outcome) -> BaselineStatus:
        if outcome is Outcome.SUCCEEDED:
            self.state.mark_step(step.fingerprint, "done")
            return BaselineStatus.APPLIED
        if outcome is Outcome.REBOOT_REQUIRED:
            if self.reboot_command is None:
                log.warning("step asked for a reboot; no reboot command is configured")
                self.state.mark_step(step.fingerprint, "done")
                return BaselineStatus.APPLIED
            self.state.mark_step(step.fingerprint, "pending_reboot")
            self.reboot_requested = True
            return BaselineStatus.REBOOT
        return BaselineStatus.FAILED

    def _report(
        self, baseline: Baseline, index: int, job_id: str, outcome: Outcome, **fields: object
    ) -> None:
        fields.setdefault("finished_at", utcnow())
        self.outbox.add(
            [
                Completion.model_validate(
                    {
                        "job_id": job_id,
                        "run_id": Names.baseline_run_id(baseline.role, baseline.version),
                        "role": self.identity.role,
                        "instance": self.identity.instance,
                        "incarnation": self.state.incarnation,
                        "outcome": outcome,
                        "attempt": 1,
                        "step": index,
                        "steps_total": len(baseline.steps),
                        "baseline_version": baseline.version,
                        "signed_by": self.signed_by,
                        **fields,
                    }
                )
            ]
        )
        # Steps are few and slow: report each at once. Whatever is unposted when the disk is
        # wiped is lost with it; the new incarnation re-runs the step and reports it then.
        self.outbox.flush()
