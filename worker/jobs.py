"""The life of one claimed job message, from decoding to settlement.

decode and check (bad input is poisoned at once) -> deadline -> already applied by this
incarnation? (re-report) -> fetch, verify and run under a renewed lease -> completion, then
delete, retry later, or poison. Completions and settlements go through the outbox, so the
message is never deleted before the completion describing it is posted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_message
from rolecall.schemas.errors import ContractError, ExecutionError, PayloadError, RolecallError
from rolecall.schemas.events import Completion, Event, Outcome
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.names import Names
from rolecall.worker.identity import Identity
from rolecall.worker.lease import Lease
from rolecall.worker.outbox import Outbox, Settlement
from rolecall.worker.poison import poison_record
from rolecall.worker.runner import Runner, Work
from rolecall.worker.state import LocalState
from rolecall.worker.trust import Verify

log = logging.getLogger(__name__)

#: Retry delays grow with the attempt number, capped, so a failing job does not spin.
MAX_RETRY_DELAY_S = 600


class JobHandler:
    def __init__(
        self,
        *,
        identity: Identity,
        names: Names,
        state: LocalState,
        runner: Runner,
        outbox: Outbox,
        verify: Verify,
        reconcile: Callable[[], None],
        should_kill: Callable[[], bool],
        on_reboot_required: Callable[[], None],
        retry_delay_s: int,
    ) -> None:
        self.identity = identity
        self.names = names
        self.state = state
        self.runner = runner
        self.outbox = outbox
        self.verify = verify
        self.reconcile = reconcile
        self.should_kill = should_kill
        self.on_reboot_required = on_reboot_required
        self.retry_delay_s = retry_delay_s
        self.processed = 0

    def handle(self, lease: Lease, tick: Callable[[], None]) -> None:
        msg = lease.msg
        job: JobEnvelope | None = None
        try:
            job = decode_message(msg.content, JobEnvelope)
            lease.job_id = job.job_id
            signed_by = self.verify(msg.content, True)
            self._check_addressing(job, msg.queue)
        except RolecallError as e:
            self._reject(lease, job, e)
            return
        ctx = {"job_id": job.job_id, "run_id": job.run_id, "attempt": msg.dequeue_count}
        self.processed += 1

        if msg.dequeue_count > job.max_attempts:
            # earlier attempts died without a result (SIGKILL, reimage, power loss)
            self._reject(
                lease,
                job,
                RolecallError(
                    f"attempts exhausted: claimed {msg.dequeue_count} times, at most "
                    f"{job.max_attempts} allowed; earlier attempts left no result",
                    reason="attempts_exhausted",
                ),
            )
            return
        if job.not_after is not None and utcnow() > job.not_after:
            log.info("job expired before it was claimed", extra=ctx)
            self._expire(lease, job)
            return
        prior = self.state.job_result(job.job_id)
        if prior is not None:
            log.info("already applied by this incarnation; reporting again", extra=ctx)
            replay = Completion.model_validate({**prior, "replayed": True})
            self.outbox.add([replay], Settlement(lease, "delete"))
            return
        if job.action == "reconcile":
            self.reconcile()
            self.outbox.add([], Settlement(lease, "delete"))
            return
        self._run(lease, job, signed_by, tick, ctx)

    def _run(
        self,
        lease: Lease,
        job: JobEnvelope,
        signed_by: str | None,
        tick: Callable[[], None],
        ctx: dict[str, Any],
    ) -> None:
        assert job.payload is not None
        attempt = lease.msg.dequeue_count
        work = Work(job.run_id, job.job_id, attempt, job.payload, job.execution, job.timeout_s)
        log.info("running job", extra=ctx)
        try:
            done = self.runner.run(work, tick=tick, should_kill=self.should_kill)
        except (PayloadError, ExecutionError) as e:
            self._reject(lease, job, e)
            return
        r = done.result
        if r.killed:
            log.info("job stopped by shutdown; releasing it for another instance", extra=ctx)
            self.outbox.add([], Settlement(lease, "retry", 0))
            return
        outcome = done.outcome()
        completion = self._completion(
            job,
            outcome,
            attempt,
            **done.completion_fields(),
            signed_by=signed_by,
            reason=f"timed out after {job.timeout_s:g}s" if r.timed_out else None,
        )
        if outcome.ok:
            # the effect happened here, lease or not: remember it so a re-delivery re-reports
            self.state.mark_job(job.job_id, completion.model_dump(mode="json"))
        if lease.lost:
            log.warning("lease lost while the job ran; not reporting this claim", extra=ctx)
            return
        log.info("job finished", extra={**ctx, "outcome": outcome.value})
        if outcome.ok:
            self.outbox.add([completion], Settlement(lease, "delete"))
            if outcome is Outcome.REBOOT_REQUIRED:
                self.on_reboot_required()
        elif attempt < job.max_attempts:
            retry = completion.model_copy(update={"will_retry": True})
            delay = min(MAX_RETRY_DELAY_S, self.retry_delay_s * 2 ** (attempt - 1))
            self.outbox.add([retry], Settlement(lease, "retry", delay))
        else:
            why = completion.reason or f"exit code {r.exit_code}"
            record = poison_record(
                lease.msg,
                outcome.value,
                f"failed on its last attempt ({attempt} of {job.max_attempts}): {why}",
                job=job,
                instance=self.identity.instance,
                incarnation=self.state.incarnation,
                last_output=done.stderr_tail or done.stdout_tail,
            )
            self.outbox.add([completion], Settlement(lease, "poison", poison=record))

    # --- refusals ------------------------------------------------------------------------

    def _check_addressing(self, job: JobEnvelope, queue: str) -> None:
        if job.role != self.identity.role:
            raise ContractError(
                f"job is for role {job.role!r}; this instance is {self.identity.role!r}",
                reason="wrong_role",
            )
        if queue == self.names.instance_queue(self.identity.instance):
            if job.target.instance != self.identity.instance:
                raise ContractError(
                    f"job on this instance's queue is addressed to {job.target.key!r}",
                    reason="wrong_instance",
                )
        elif job.target.instance is not None:
            raise ContractError(
                f"job on the role queue is addressed to instance {job.target.instance!r}",
                reason="wrong_instance",
            )

    def _reject(self, lease: Lease, job: JobEnvelope | None, error: RolecallError) -> None:
        """Poison the message with its reason; tell the controller if we know the job."""
        log.warning(
            "poisoning message: %s",
            error.message,
            extra={"queue": lease.msg.queue, "message_id": lease.msg.id},
        )
        record = poison_record(
            lease.msg,
            error.reason,
            error.message,
            job=job,
            instance=self.identity.instance,
            incarnation=self.state.incarnation,
        )
        events: list[Event] = []
        if job is not None:
            reason = f"{error.reason}: {error.message}"
            events.append(
                self._completion(job, Outcome.REJECTED, lease.msg.dequeue_count, reason=reason)
            )
        self.outbox.add(events, Settlement(lease, "poison", poison=record))

    def _expire(self, lease: Lease, job: JobEnvelope) -> None:
        """Refused, not run: reported as expired and kept in the poison queue for audit (an
        old signed job replayed later is refused here too)."""
        assert job.not_after is not None
        reason = f"claimed after its deadline {job.not_after.isoformat()}"
        c = self._completion(job, Outcome.EXPIRED, lease.msg.dequeue_count, reason=reason)
        record = poison_record(
            lease.msg, "expired", reason, job=job,
            instance=self.identity.instance, incarnation=self.state.incarnation,
        )  # fmt: skip
        self.outbox.add([c], Settlement(lease, "poison", poison=record))

    def _completion(
        self, job: JobEnvelope, outcome: Outcome, attempt: int, **fields: Any
    ) -> Completion:
        fields.setdefault("finished_at", utcnow())
        if fields.get("reason"):
            fields["reason"] = str(fields["reason"])[:1024]
        return Completion(
            job_id=job.job_id,
            run_id=job.run_id,
            role=self.identity.role,
            instance=self.identity.instance,
            incarnation=self.state.incarnation,
            outcome=outcome,
            attempt=attempt,
            **fields,
        )
