"""Applying the role's baseline: the ordered steps every incarnation must have run.

Read at every agent start and on a ``reconcile`` job; needs only the storage account, never a
controller. Each step is remembered by fingerprint in the local state, so a restart re-runs
nothing and a reimage (state wiped) re-runs everything. A failed step stops the baseline (steps
are ordered; later ones may depend on it) and the agent retries the baseline later.

A step that exits with a reboot code (3010 Windows, 194 Linux) is recorded as done-pending-
reboot with the OS boot it ran in; with a reboot command configured the agent runs it and
exits, and the remaining steps continue once the agent runs in a later OS boot (an agent
restarted in the same boot asks for the reboot again). Exit 1641 means the installer has
started the reboot itself. Without a reboot command, the step counts as done at once.

A baseline that pins an agent version starts with the agent step (worker/agent_step.py),
reported as step ``AGENT_STEP`` (-1). When it installs the pinned version the baseline stops
there (``UPGRADE``): the agent exits and the new version applies the rest. A failed agent
step does not stop the baseline; it is reported after the steps, so that it is what the run
shows for the instance.
"""

from __future__ import annotations

import logging
from enum import Enum

from rolecall.schemas.base import utcnow
from rolecall.schemas.baseline import AGENT_STEP, Baseline, Step
from rolecall.schemas.codec import decode_document
from rolecall.schemas.errors import (
    ContractError,
    NotFound,
    RequiresNewerAgent,
    RolecallError,
    StorageError,
)
from rolecall.schemas.events import Completion, Outcome
from rolecall.schemas.instances import BaselineFailure
from rolecall.schemas.names import Names, name_key
from rolecall.storage.clients import Storage
from rolecall.worker import upgrade
from rolecall.worker.agent_step import AgentStep, Verdict
from rolecall.worker.context import JobContext
from rolecall.worker.forward import HighWater
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
    UPGRADE = "upgrade"  # the pinned agent version is installed: restart into it


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
        agent_step: AgentStep,
    ) -> None:
        self.storage = storage
        self.identity = identity
        self.state = state
        self.runner = runner
        self.outbox = outbox
        self.verify = verify
        self.reboot_command = reboot_command
        self.watch = watch
        self.agent_step = agent_step
        self.version: int | None = state.baseline_version
        self.high_water = HighWater(state)
        self.signed_by: str | None = None
        self.reboot_requested = False
        #: baseline versions whose failed agent step this process has reported
        self._agent_said: set[int] = set()
        #: the step exited 1641: its installer is rebooting the machine already
        self.reboot_started = False
        #: why the baseline is not applied yet, for the instance record (`rolecall instances`)
        self.failure: BaselineFailure | None = None
        self._tries = 0  # step runs by this agent process: each gets a log of its own

    def fetch(self) -> Baseline | None:
        path = Names.baseline_blob(self.identity.role)
        try:
            raw = self.storage.get_blob(self.storage.names.state_container, path).data
        except NotFound:
            return None
        try:
            baseline = decode_document(raw, Baseline)
        except RequiresNewerAgent:
            self._upgrade_to_read(raw)  # returns only if it cannot
            raise
        self.signed_by = self.verify(raw, False)
        if baseline.role != self.identity.role:
            raise ContractError(f"baseline at {path} is for role {baseline.role!r}")
        self.high_water.check(baseline)
        return baseline

    def apply(self) -> BaselineStatus:
        try:
            baseline = self.fetch()
        except _Upgrading:
            return BaselineStatus.UPGRADE
        except StorageError as e:
            log.warning("cannot read the baseline yet: %s", e)
            return BaselineStatus.UNREADABLE
        except RolecallError as e:
            log.error("baseline refused: %s", e.message)
            self.failure = BaselineFailure(outcome="refused", reason=e.message[:512], at=utcnow())
            return BaselineStatus.FAILED
        if baseline is None:
            log.info("no baseline published for role %s", self.identity.role)
            self.failure = None
            return BaselineStatus.NONE
        verdict = self._agent(baseline)
        if verdict.upgrade or verdict.retry:
            return BaselineStatus.UPGRADE if verdict.upgrade else BaselineStatus.UNREADABLE
        for index in range(len(baseline.steps)):
            status = self._step(baseline, index)
            if status is not BaselineStatus.APPLIED:
                self._say_agent_failed(baseline, verdict)
                return status
        self._say_agent_failed(baseline, verdict)
        if self.version != baseline.version:
            log.info("baseline v%d applied", baseline.version)
        self.failure = None
        self.version = baseline.version
        self.state.baseline_version = baseline.version
        self.high_water.taken(baseline)
        return BaselineStatus.APPLIED

    # --- the agent step (worker/agent_step.py) ---------------------------------------------

    def _agent(self, baseline: Baseline) -> Verdict:
        if baseline.agent is None:
            return Verdict()
        verdict = self.agent_step.apply(baseline.agent, baseline.version)
        if verdict.outcome is Outcome.SUCCEEDED and self.version != baseline.version:
            self._report(baseline, AGENT_STEP, self._job_id(baseline, AGENT_STEP), verdict.outcome,
                         stdout_tail=verdict.message)  # fmt: skip
        return verdict

    def _say_agent_failed(self, baseline: Baseline, verdict: Verdict) -> None:
        """Once per baseline version this incarnation has not finished yet: the steps have run
        (or stopped), so the run shows this as the instance's latest word."""
        if verdict.outcome is not Outcome.FAILED or self.version == baseline.version:
            return
        if baseline.version in self._agent_said:
            return
        self._agent_said.add(baseline.version)
        log.warning("agent step of baseline v%d: %s", baseline.version, verdict.message)
        self._report(baseline, AGENT_STEP, self._job_id(baseline, AGENT_STEP), Outcome.FAILED,
                     reason=verdict.message)  # fmt: skip

    def _job_id(self, baseline: Baseline, index: int) -> str:
        """A step's job id, as controller/reports.py expects it; the agent step's is s-1."""
        run_id = Names.baseline_run_id(baseline.role, baseline.version)
        return f"{run_id}.{name_key(self.identity.instance)}.s{index}"

    def _upgrade_to_read(self, raw: bytes) -> None:
        """A baseline that needs a newer contract than this agent speaks may pin the agent
        that speaks it: upgrade first (signature checked), then that agent reads it."""
        self.verify(raw, False)
        found = upgrade.pinned(raw, self.identity.role)
        if found is not None and self.agent_step.apply(*found).upgrade:
            raise _Upgrading()

    def _marked(self, baseline: Baseline, index: int) -> BaselineStatus | None:
        """A step this disk has run: done, or waiting for its reboot. None: run it."""
        step = baseline.steps[index]
        mark = self.state.step_mark(step.fingerprint)
        if mark is not None and mark.status == "done":
            if self.version != baseline.version:
                # done under an earlier version: say so, so this version's run shows it
                job_id = self._job_id(baseline, index)
                self._report(baseline, index, job_id, Outcome.SUCCEEDED, replayed=True)
            return BaselineStatus.APPLIED
        if mark is not None and mark.status == "pending_reboot":
            if not self.state.rebooted_since(mark) and self.reboot_command is not None:
                # the reboot has not happened (its command failed, or the agent restarted
                # first): ask for it again, run nothing after the step
                self.reboot_requested = True
                return BaselineStatus.REBOOT
            self.state.mark_step(step.fingerprint, "done")  # the OS has booted since
            return BaselineStatus.APPLIED
        return None

    def _step(self, baseline: Baseline, index: int) -> BaselineStatus:
        marked = self._marked(baseline, index)
        if marked is not None:
            return marked
        step = baseline.steps[index]
        run_id = Names.baseline_run_id(baseline.role, baseline.version)
        job_id = self._job_id(baseline, index)
        self._tries += 1
        tried = f"{self.state.boot}-{self._tries}"
        instance, incarnation = self.identity.instance, self.state.incarnation

        def log_name(token: str) -> str:  # unguessable, as a job's log (worker/runner.py)
            return Names.step_log_blob(run_id, instance, index, incarnation, f"{tried}.{token}")

        work = Work(run_id, job_id, 1, step.payload, step.execution, step.timeout_s,
                    log_name=log_name, keep_log=True)  # fmt: skip
        ctx = {"run_id": run_id, "job_id": job_id, "step": index}
        log.info("applying baseline step %r", step.name, extra=ctx)
        try:
            done = self.runner.run(work, self.watch)
        except RolecallError as e:
            self._failed(baseline, index, Outcome.REJECTED, None, f"{e.reason}: {e}")
            self._report(baseline, index, job_id, Outcome.REJECTED, reason=f"{e.reason}: {e}")
            return BaselineStatus.FAILED
        r = done.result
        if r.killed:
            return BaselineStatus.FAILED
        outcome = done.outcome(step.reboot)
        # marked before it is reported: a crash in between re-reports the step at the next
        # start (as done under a version not yet recorded) instead of running it again
        status = self._mark(step, outcome)
        self.reboot_started = status is BaselineStatus.REBOOT and done.reboot_started
        # the step's log is found by its own name (Names.step_log_blob, `rolecall logs`); a
        # completion names only a job's log, where the controller checks it goes
        self._report(baseline, index, job_id, outcome, **{**done.completion_fields(),
                                                           "log_blob": None})  # fmt: skip
        self.runner.sweep()  # the step's files go once it is marked and reported
        if outcome.ok:
            log.info("baseline step finished", extra={**ctx, "outcome": outcome.value})
        else:
            last = (done.stderr_tail or done.stdout_tail).strip().splitlines()
            self._failed(baseline, index, outcome, r.exit_code, last[-1][:200] if last else "")
        return status

    def _failed(
        self, baseline: Baseline, index: int, outcome: Outcome, code: int | None, why: str
    ) -> None:
        """A step failed: the baseline stops here, and says so at warning."""
        step = baseline.steps[index]
        self.failure = BaselineFailure(
            version=baseline.version, step=index, name=step.name[:256], outcome=outcome.value,
            exit_code=code, reason=why[:512], at=utcnow(),
        )  # fmt: skip
        log.warning(
            "baseline v%d step %d %r %s%s%s; the baseline stops here and is retried later",
            baseline.version, index, step.name, outcome.value,
            f" (exit {code})" if code is not None else "", f": {why}" if why else "",
            extra={"run_id": Names.baseline_run_id(baseline.role, baseline.version),
                   "step": index, "outcome": outcome.value},
        )  # fmt: skip

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
                        "steps_total": baseline.steps_total,
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


class _Upgrading(Exception):
    """Raised out of fetch() when the agent step of an unreadable baseline upgraded."""
