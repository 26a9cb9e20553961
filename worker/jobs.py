"""The life of one claimed job message, from decoding to its settlement.

decode and check (bad input is dead-lettered at once) -> attempts and deadline (policy) ->
already applied by this incarnation? (re-report) -> fetch, verify and run under a renewed
lease -> completion, then what the policy decides: ack, retry later, release, dead-letter.
Completions and settlements go through the outbox, so the message is never deleted before
the completion describing it is posted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from rolecall import telemetry
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_message, job_ids_of
from rolecall.schemas.errors import (
    ContractError,
    ExecutionError,
    PayloadError,
    Replayed,
    RolecallError,
    StorageError,
)
from rolecall.schemas.events import Completion, Event, Outcome, Started
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.names import Names
from rolecall.worker import policy
from rolecall.worker.binding import check_binding
from rolecall.worker.claim import Ack, ClaimState, DeadLetter, Release
from rolecall.worker.context import JobContext
from rolecall.worker.identity import Identity
from rolecall.worker.outbox import Outbox
from rolecall.worker.poison import poison_record
from rolecall.worker.runner import LocalFault, Ran, Runner, Work
from rolecall.worker.state import LocalState
from rolecall.worker.trust import Verify

log = logging.getLogger(__name__)


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
        on_reboot_required: Callable[[], None],
        retry_delay_s: int,
        replay_window_s: float = 120.0,
    ) -> None:
        self.identity = identity
        self.names = names
        self.state = state
        self.runner = runner
        self.outbox = outbox
        self.verify = verify
        self.reconcile = reconcile
        self.on_reboot_required = on_reboot_required
        self.retry_delay_s = retry_delay_s
        self.replay_window_s = replay_window_s
        #: a job exited 1641: its installer is rebooting the machine already
        self.reboot_started = False

    def handle(self, ctx: JobContext) -> None:
        """Handle one claimed message to its settlement. Whatever it holds, it ends settled or
        in the outbox: an error nobody foresaw (a hostile input finding a path no check
        covers) poisons the message with reason ``internal_error`` instead of escaping to the
        claim loop, where the message would come back after its lease, be claimed again
        before any attempt count was checked, and never leave the queue. Storage errors still
        escape: the lease lapses and the message is tried again, which is right for them."""
        claim = ctx.claim
        assert claim is not None
        with telemetry.span("rolecall.job", queue=claim.msg.queue):
            try:
                self._handle(ctx)
            except StorageError:
                raise
            except Exception as e:
                if claim.state is not ClaimState.RUNNING or self.outbox.holds(claim):
                    raise  # already settled or on its way: nothing to poison
                where = {"queue": claim.msg.queue, "message_id": claim.msg.id}
                log.exception("poisoning a message the agent could not handle", extra=where)
                reason = e.reason if isinstance(e, RolecallError) else "internal_error"
                why = f"the agent could not handle this message: {type(e).__name__}: {e}"
                self._give_up(ctx, None, policy.GiveUp(reason, why, Outcome.REJECTED))

    def _handle(self, ctx: JobContext) -> None:
        claim = ctx.claim
        assert claim is not None
        msg = claim.msg
        admitted = self._admit(ctx)
        if admitted is None:
            return
        job, signed_by = admitted
        ctx.run_id = job.run_id
        fields = {"job_id": job.job_id, "run_id": job.run_id, "attempt": msg.dequeue_count}
        telemetry.annotate(job_id=job.job_id, run_id=job.run_id, attempt=msg.dequeue_count)
        refusal = policy.before_attempt(
            attempt=msg.dequeue_count, max_attempts=job.max_attempts, not_after=job.not_after,
            now=utcnow(),
        )  # fmt: skip
        if refusal is not None:
            log.info("job refused before running: %s", refusal.message, extra=fields)
            self._give_up(ctx, job, refusal)
            return
        prior = self.state.job_result(job.job_id)
        if prior is not None:
            log.info("already applied by this incarnation; reporting again", extra=fields)
            replay = Completion.model_validate({**prior, "replayed": True})
            self.outbox.add([replay], claim, Ack())
            return
        if job.action in ("reconcile", "cancel"):
            self._control(job)
            self.outbox.add([], claim, Ack())
            return
        if job.run_id in self.state.cancelled_runs:
            c = self._completion(job, Outcome.CANCELLED, msg.dequeue_count,
                                 reason="cancelled before it ran")  # fmt: skip
            self.outbox.add([c], claim, Ack())
            return
        try:
            self._run(ctx, job, signed_by, fields)
        finally:
            self.runner.sweep()  # the job's files go after its marker and completion

    def _admit(self, ctx: JobContext) -> tuple[JobEnvelope, str | None] | None:
        """Decode and check a message: its job and signer, or None once it is refused (bad
        input is dead-lettered with its reason)."""
        claim = ctx.claim
        assert claim is not None
        msg = claim.msg
        job: JobEnvelope | None = None
        try:
            job = decode_message(msg.content, JobEnvelope)
            claim.job_id = job.job_id
            signed_by = self.verify(msg.content, True)
            self._check_addressing(job, msg.queue)
            check_binding(
                job, msg.inserted_on, signed=signed_by is not None, window_s=self.replay_window_s
            )
            job = self.runner.unsealer.open(job)  # after the checks: a refused job stays sealed
        except Replayed as e:
            # a replay speaks for nobody: it must not change what an old run shows
            self._reject(ctx, job, e, report=False)
            return None
        except RolecallError as e:
            self._reject(ctx, job, e)
            return None
        return job, signed_by

    def _control(self, job: JobEnvelope) -> None:
        """A job that runs nothing: apply the baseline now, or stop a run's jobs here."""
        if job.action == "reconcile":
            self.reconcile()
            return
        assert job.cancel_run is not None
        log.info("run cancelled: its jobs are refused here from now on",
                 extra={"run_id": job.cancel_run})  # fmt: skip
        self.state.cancel_run(job.cancel_run)

    def _run(
        self, ctx: JobContext, job: JobEnvelope, signed_by: str | None, fields: dict[str, Any]
    ) -> None:
        claim = ctx.claim
        assert claim is not None and job.payload is not None
        attempt = claim.msg.dequeue_count
        work = Work(job.run_id, job.job_id, attempt, job.payload, job.execution, job.timeout_s)
        # one info line per job (when it finishes): at hundreds of jobs a second, a second
        # line costs a quarter of a millisecond of the agent's CPU each
        log.debug("running job", extra=fields)
        self.outbox.started(Started(
            job_id=job.job_id, run_id=job.run_id, instance=self.identity.instance,
            incarnation=self.state.incarnation, attempt=attempt, started_at=utcnow(),
        ))  # fmt: skip
        try:
            done = self.runner.run(work, ctx)
        except LocalFault as e:
            # this machine's fault, not the job's: a failed attempt, retried by the policy
            log.warning("job could not be prepared: %s", e.message, extra=fields)
            completion = self._completion(
                job, Outcome.FAILED, attempt, signed_by=signed_by, reason=str(e)
            )
            self._settle(ctx, job, None, completion)
            return
        except (PayloadError, ExecutionError) as e:
            self._reject(ctx, job, e)
            return
        if done.result.killed and ctx.cancelled:
            log.info("job stopped: its run was cancelled", extra=fields)
            c = self._completion(job, Outcome.CANCELLED, attempt, done, signed_by,
                                 reason="stopped by cancel")  # fmt: skip
            self.outbox.add([c], claim, Ack())
            return
        if done.result.killed:
            log.info("job stopped by shutdown; releasing it for another instance", extra=fields)
            self.outbox.add([], claim, Release())
            return
        outcome = done.outcome()
        completion = self._completion(job, outcome, attempt, done, signed_by)
        if outcome.ok:
            # the effect happened here, lease or not: remember it so a re-delivery re-reports
            self.state.mark_job(job.job_id, completion.model_dump(mode="json"))
        if claim.state is ClaimState.LOST:
            log.warning("lease lost while the job ran; not reporting this claim", extra=fields)
            return
        log.info(
            "job finished in %.2fs", done.result.duration_s,
            extra={**fields, "outcome": outcome.value},
        )  # fmt: skip
        self._settle(ctx, job, done, completion)

    def _settle(
        self, ctx: JobContext, job: JobEnvelope, done: Ran | None, completion: Completion
    ) -> None:
        """Report the attempt and settle its message as the policy decides."""
        claim = ctx.claim
        assert claim is not None
        attempt = claim.msg.dequeue_count
        decision = policy.after_attempt(
            completion.outcome, attempt=attempt, max_attempts=job.max_attempts,
            retry_delay_s=self.retry_delay_s,
        )  # fmt: skip
        if isinstance(decision, policy.GiveUp):
            why = completion.reason or f"exit code {completion.exit_code}"
            record = poison_record(
                claim.msg, decision.reason, f"{decision.message}: {why}", job=job,
                instance=self.identity.instance, incarnation=self.state.incarnation,
                last_output=(done.stderr_tail or done.stdout_tail) if done else "",
            )  # fmt: skip
            self.outbox.add([completion], claim, DeadLetter(record))
        elif isinstance(decision, Ack):
            self.outbox.add([completion], claim, decision)
            if completion.outcome is Outcome.REBOOT_REQUIRED:
                self.reboot_started |= done is not None and done.reboot_started
                self.on_reboot_required()
        else:
            retry = completion.model_copy(update={"will_retry": True})
            self.outbox.add([retry], claim, decision)

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

    def _reject(
        self, ctx: JobContext, job: JobEnvelope | None, error: RolecallError, report: bool = True
    ) -> None:
        """Bad input: dead-letter it with its reason; tell the controller if we know the job."""
        claim = ctx.claim
        assert claim is not None
        log.warning(
            "poisoning message: %s", error.message,
            extra={"queue": claim.msg.queue, "message_id": claim.msg.id},
        )  # fmt: skip
        why = policy.GiveUp(error.reason, error.message, Outcome.REJECTED)
        self._give_up(ctx, job, why, report=report)

    def _give_up(
        self, ctx: JobContext, job: JobEnvelope | None, why: policy.GiveUp, report: bool = True
    ) -> None:
        """Dead-letter the message (kept for audit and requeue) and report the job, if known,
        with the outcome the refusal implies."""
        claim = ctx.claim
        assert claim is not None
        record = poison_record(
            claim.msg, why.reason, why.message, job=job,
            instance=self.identity.instance, incarnation=self.state.incarnation,
        )  # fmt: skip
        events: list[Event] = []
        ids = (job.job_id, job.run_id) if job is not None else job_ids_of(claim.msg.content)
        if ids is not None and report:
            reason = f"{why.reason}: {why.message}"
            events.append(
                self._completion(ids, why.outcome, claim.msg.dequeue_count, reason=reason)
            )
        self.outbox.add(events, claim, DeadLetter(record))

    def _completion(
        self,
        job: JobEnvelope | tuple[str, str],
        outcome: Outcome,
        attempt: int,
        done: Ran | None = None,
        signed_by: str | None = None,
        reason: str | None = None,
    ) -> Completion:
        fields: dict[str, Any] = done.completion_fields() if done is not None else {}
        if done is not None and done.result.timed_out and isinstance(job, JobEnvelope):
            reason = f"timed out after {job.timeout_s:g}s"
        job_id, run_id = (job.job_id, job.run_id) if isinstance(job, JobEnvelope) else job
        return Completion(
            job_id=job_id,
            run_id=run_id,
            role=self.identity.role,
            instance=self.identity.instance,
            incarnation=self.state.incarnation,
            outcome=outcome,
            attempt=attempt,
            finished_at=fields.pop("finished_at", None) or utcnow(),
            signed_by=signed_by,
            reason=reason[:1024] if reason else None,
            **fields,
        )
