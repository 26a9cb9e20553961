"""The agent: boot, register, apply the baseline, then claim and run jobs until told to stop.

One thread does everything; a running job is a child process waited on in short slices, and
between slices (``between_slices``, reached through the job's JobContext) the agent renews the
job's lease, flushes finished completions and keeps its heartbeat. That keeps every race in
one place: the outbox and the claim.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable

from rolecall import logs
from rolecall.schemas.errors import AccessDenied, InstanceInUse, NotFound, StorageError
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceState
from rolecall.storage.backoff import IdleBackoff
from rolecall.storage.clients import Storage
from rolecall.worker.agent_step import AgentStep
from rolecall.worker.baseline import BaselineApplier, BaselineStatus
from rolecall.worker.cancels import CancelWatch, is_cancel
from rolecall.worker.claim import Claim
from rolecall.worker.config import WorkerSettings
from rolecall.worker.context import JobContext
from rolecall.worker.history import ReportingOutbox
from rolecall.worker.identity import Identity, resolve_identity
from rolecall.worker.jobs import JobHandler
from rolecall.worker.outbox import BatchSigner, Outbox
from rolecall.worker.payloads import PayloadCache
from rolecall.worker.reboot import reboot
from rolecall.worker.registration import Registration
from rolecall.worker.runner import Runner
from rolecall.worker.self_update import SelfUpdate
from rolecall.worker.shutdown import ExitCode, Shutdown
from rolecall.worker.state import LocalState
from rolecall.worker.trust import UNSIGNED_WARNING, verifier

log = logging.getLogger("rolecall.worker")

#: baseline states the agent tries again later
_RETRIED = (BaselineStatus.FAILED, BaselineStatus.UNREADABLE)


class Agent:
    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        verify = verifier(settings)  # first: an agent that trusts no key goes no further
        self.shutdown = Shutdown(settings.grace_s)
        self.identity: Identity = resolve_identity(settings)
        self.state = LocalState(settings.state_dir, settings.boot_time_file).open()
        who = {"role": self.identity.role, "instance": self.identity.instance}
        logs.configure(settings.log_level, {**who, "incarnation": self.state.incarnation})
        self.storage = Storage(settings)
        self.names: Names = self.storage.names
        self.instance_queue = self.names.instance_queue(self.identity.instance)
        self.role_queue = self.names.role_queue(self.identity.role)
        self.unsigned = not settings.trusted_keys
        self.registration = Registration(self.storage, self.identity, self.state.incarnation,
                                         settings.heartbeat_s, self.shutdown.wait,
                                         accepts_unsigned=self.unsigned)  # fmt: skip
        self.outbox = self._outbox(settings)
        cache = PayloadCache(self.storage, self.state.cache_dir, settings.payload_max_bytes)
        self.runner = Runner(settings, self.storage, self.identity, self.state, cache)
        if self.unsigned:
            log.warning(UNSIGNED_WARNING)
        self.updates = SelfUpdate(
            storage=self.storage, cache=cache, verify=verify, settings=settings,
            identity=self.identity, work_dir=self.state.work_dir,
        )  # fmt: skip
        self.baseline = BaselineApplier(
            storage=self.storage, identity=self.identity, state=self.state, runner=self.runner,
            outbox=self.outbox, verify=verify, reboot_command=settings.reboot_command,
            watch=JobContext(self), agent_step=AgentStep(self.updates, JobContext(self)),
        )  # fmt: skip
        self.jobs = JobHandler(
            identity=self.identity, names=self.names, state=self.state, runner=self.runner,
            outbox=self.outbox, verify=verify, reconcile=self._apply_baseline,
            on_reboot_required=self._reboot_after_settling, retry_delay_s=settings.retry_delay_s,
            replay_window_s=settings.replay_window_s,
        )  # fmt: skip
        self.baseline_status = BaselineStatus.FAILED
        self.next_heartbeat = 0.0
        self.next_baseline_retry = 0.0
        self._baseline_backoff = IdleBackoff(2.0, settings.baseline_retry_s, jitter=0.5)
        self.reboot_pending = False
        self.upgrading = False  # the agent step installed another version: leave, restart
        self._held: list[Claim] = []
        self._running: JobContext | None = None
        self.cancels = CancelWatch(self.storage, self.instance_queue, verify)
        self._said_stopping = False
        self._missing: set[str] = set()
        self.displaced: InstanceInUse | None = None

    def _outbox(self, settings: WorkerSettings) -> Outbox:
        """Reports go to this role's results container, signed with the instance's enrolled key
        where its credentials carry one (controller/enrolment.py)."""
        bundle = self.storage.account.bundle
        key = bundle.instance_key if bundle is not None else None
        return ReportingOutbox(
            self.storage, self.state.outbox_dir, self.identity.instance, settings.flush_s,
            container=self.names.results_container(self.identity.role),
            signer=BatchSigner(key.get_secret_value()) if key is not None else None,
            history=self.registration.history,
        )  # fmt: skip

    # --- lifecycle -------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> ExitCode:
        self.shutdown.install(self.settings.stop_event)
        try:
            self.boot()
            if not self.leaving:
                self.loop(once=once)
        except AccessDenied as e:
            log.error("storage refused our credentials: %s", e.message)
            return ExitCode.ACCESS_DENIED
        except InstanceInUse as e:
            self.displaced = e
            log.error("%s", e.message)
        except StorageError:
            if not self.shutdown.stopping:  # stopped while storage was waited out at boot: fine
                raise
        finally:
            self.stop()
        if self.displaced is not None:
            return ExitCode.CONFIG
        if self.reboot_pending and self.settings.reboot_command:
            started = self.baseline.reboot_started or self.jobs.reboot_started  # exit 1641
            return reboot(self.settings.reboot_command, started, self.shutdown)
        if self.upgrading:
            return ExitCode.UPGRADING
        return ExitCode.FORCED if self.shutdown.forced.is_set() else ExitCode.OK

    @property
    def leaving(self) -> bool:
        """Stop claiming: a reboot or an upgrade is next (what is held is released)."""
        return self.reboot_pending or self.upgrading

    def boot(self) -> None:
        """Register, say hello, apply the baseline. Storage hiccups are waited out here.

        A new incarnation waits a random moment (``boot_jitter_s``: a zone reimaged together
        does not call storage in the same second), then makes sure its two queues exist, so
        whoever sees it registered can send to them. Nothing else is created up front (8
        refused creates a boot are 40,000 for a zone of 5,000): the rest when its absence
        shows, and nothing where the deployment made everything (``provisioned``)."""
        if self.state.new_incarnation and self.settings.boot_jitter_s > 0:
            self.shutdown.wait(random.uniform(0, self.settings.boot_jitter_s))  # noqa: S311
        if self.state.new_incarnation and not self.settings.provisioned:
            self._until_ok("prepare queues", self._ensure_own_queues)
        if recovered := self.outbox.recover():
            log.info("recovered %d unposted event batches from the last run", recovered)
        self._until_ok("register", self._register)
        if not self.registration.held:
            return  # stopped while watching whoever held the instance name
        hello = self.registration.hello(self.state.new_incarnation)
        # said at once: a reimage mid-baseline would otherwise wipe the unposted hello
        self.outbox.add([hello])
        self.outbox.flush()
        self.updates.check_in()  # registered and said hello: an upgrade to us is confirmed
        log.info("agent started (%s incarnation)", "new" if self.state.new_incarnation else "known")
        self._apply_baseline()
        self.outbox.flush()

    def _register(self) -> None:
        """Take the instance name (worker/registration.py); refused if a running agent has it."""
        b = self.baseline  # what a restart already applied (a new incarnation: nothing)
        first = functools.partial(self.registration.record, InstanceState.CONFIGURING,
                                  b.version, b.failure, b.high_water.mark)  # fmt: skip
        try:
            self.registration.register(first)
        except NotFound:
            self._provision()  # storage was reset under a known disk
            self.registration.register(first)
        self.baseline.high_water.recover(self.registration.baseline_versions())  # after a reimage
        self.next_heartbeat = time.monotonic() + self.settings.heartbeat_s

    def _ensure_own_queues(self) -> None:
        for q in (self.instance_queue, self.role_queue):
            self.storage.ensure_queue(q)

    def _provision(self) -> None:
        """Create what is missing, where our credentials allow (not with a SAS bundle)."""
        self.storage.ensure_containers()
        for q in (self.instance_queue, self.role_queue):
            self.storage.ensure_queue(q)
            self.storage.ensure_queue(self.names.poison_queue(q))
        self.storage.ensure_container(self.outbox.container)

    def loop(self, *, once: bool = False) -> None:
        backoff = IdleBackoff(self.settings.poll_min_s, self.settings.poll_max_s)
        next_poll = 0.0
        while not self.shutdown.stopping and not self.leaving:
            self._housekeeping()
            now = time.monotonic()
            if now < next_poll:
                # woken for a duty (heartbeat, baseline retry), not to poll: every poll is a
                # billed transaction, and an idle fleet pays them around the clock
                self.shutdown.wait(min(next_poll - now, self._until_next_duty()))
                continue
            if self.outbox.failing and not self.outbox.flush():
                next_poll = time.monotonic() + backoff.idle()  # no new work while we owe
                continue
            try:
                worked = self._claim_batch()
            except AccessDenied:
                raise
            except StorageError as e:
                log.warning("cannot claim work: %s", e)
                next_poll = time.monotonic() + backoff.idle()
                continue
            except Exception:
                # An agent that dies leaves its instance unconfigurable until someone looks.
                # Log with the traceback, back off, carry on; leases protect the work.
                log.exception("unexpected error in the claim loop; continuing")
                next_poll = time.monotonic() + backoff.idle()
                continue
            if worked:
                backoff.busy()
                continue
            self.outbox.flush()
            if once:
                break
            next_poll = time.monotonic() + backoff.idle()

    def stop(self) -> None:
        """Release what we hold, post what we owe, and say we are gone."""
        for claim in self._held:
            claim.release()
        self._held = []
        self.outbox.flush()
        state = InstanceState.REBOOT_PENDING if self.reboot_pending else InstanceState.STOPPED
        if self.upgrading:
            state = InstanceState.CONFIGURING  # back in seconds, as the next version
        try:
            if self.registration.held:  # never overwrite the record of the name's holder
                self._write_record(state)
        except (StorageError, InstanceInUse) as e:
            log.warning("could not record shutdown: %s", e)
        if self.settings.stats_file:
            self.storage.meter.dump(self.settings.stats_file)
        log.info("agent stopped")

    # --- claiming --------------------------------------------------------------------------

    def _claim_batch(self) -> bool:
        """Claim from the instance queue first (work only we can do), then the role queue."""
        for queue in (self.instance_queue, self.role_queue):
            claimed_at = time.monotonic()
            try:
                msgs = self.storage.receive(
                    queue, max_messages=self.settings.batch, visibility_s=self.settings.lease_s
                )
            except NotFound:
                # a missing queue must not starve the other one; create it if we may (a new
                # instance's queue appears here, at its first claim)
                if queue not in self._missing:
                    log.info("queue %s does not exist yet; creating it if allowed", queue)
                    self._missing.add(queue)
                    self.storage.ensure_queue(queue)
                    self.storage.ensure_queue(self.names.poison_queue(queue))
                continue
            self._missing.discard(queue)
            if msgs:
                self._work(
                    [Claim(self.storage, m, self.settings.lease_s, claimed_at) for m in msgs]
                )
                return True
        return False

    def _work(self, claims: list[Claim]) -> None:
        # a cancel first: it must reach the jobs of its run that wait in the same batch
        claims = sorted(claims, key=lambda c: not is_cancel(c.msg.content))
        self._held = claims
        try:
            for claim in claims:
                if self.shutdown.stopping or self.leaving:
                    break
                if not claim.start(margin_s=self.settings.lease_s / 2):
                    continue
                self._running = JobContext(self, claim)
                self.jobs.handle(self._running)
                self._running = None
                if self.outbox.due():
                    self.outbox.flush(wait=False)
        finally:
            # the deletes go on in the background while the next batch runs; an idle turn
            # of the loop, and stop(), wait for them
            self.outbox.flush(wait=False)
            # Only never-started messages go back (shutdown). A handled message is the
            # outbox's until its completion is posted: releasing it early would let another
            # instance run it again while its result is still on its way.
            for claim in claims:
                claim.release()
            self._held = []

    def between_slices(self, claim: Claim | None) -> None:
        """While a job runs (the JobContext's duties): renew, flush, heartbeat."""
        if self.shutdown.stopping and not self._said_stopping:
            self._said_stopping = True
            log.info("shutdown requested; the running job has %gs to finish", self.settings.grace_s)
        if claim is not None and claim.renewal_due:
            claim.renew()
            running = self._running
            if running is not None and running.run_id and self.cancels.requested(running.run_id):
                log.info("run cancelled; stopping its job", extra={"run_id": running.run_id})
                running.cancelled = True
            if claim.renewals == 1:
                # a long job: stop sitting on the rest of the batch (release() leaves claims
                # that already ran alone: their settlement is waiting in the outbox)
                for other in self._held:
                    other.release()
        if self.outbox.due():
            self.outbox.flush(wait=False)
        if time.monotonic() >= self.next_heartbeat:
            self._heartbeat()

    def should_kill_job(self) -> bool:
        return self.shutdown.should_kill_job()

    # --- duties ----------------------------------------------------------------------------

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self.next_heartbeat:
            self._heartbeat()
        if self.baseline_status in _RETRIED and now >= self.next_baseline_retry:
            self._apply_baseline()

    def _until_next_duty(self) -> float:
        duties = [self.next_heartbeat]
        if self.baseline_status in _RETRIED:
            duties.append(self.next_baseline_retry)
        return max(0.05, min(duties) - time.monotonic())

    def _apply_baseline(self) -> None:
        self.baseline_status = self.baseline.apply()
        if self.baseline_status is BaselineStatus.UNREADABLE:
            # storage hiccupped: try again in seconds, not minutes (a zone of instances that
            # came back at once spreads itself out by the back-off's jitter)
            delay = self._baseline_backoff.idle()
        else:
            self._baseline_backoff.busy()
            delay = self.settings.baseline_retry_s
        self.next_baseline_retry = time.monotonic() + delay
        if self.baseline_status is BaselineStatus.REBOOT:
            self.reboot_pending = self.baseline.reboot_requested
        self.upgrading = self.baseline_status is BaselineStatus.UPGRADE
        self._heartbeat()

    def _steady_state(self) -> InstanceState:
        if self.reboot_pending:
            return InstanceState.REBOOT_PENDING
        if self.baseline_status in (BaselineStatus.APPLIED, BaselineStatus.NONE):
            return InstanceState.READY
        return InstanceState.CONFIGURING

    def _heartbeat(self) -> None:
        if self.settings.stats_file:
            self.storage.meter.dump(self.settings.stats_file)  # survives a SIGKILL, roughly
        try:
            self._write_record(self._steady_state())
        except StorageError as e:
            log.warning("heartbeat failed: %s", e)
            self.next_heartbeat = time.monotonic() + min(30.0, self.settings.heartbeat_s)
        except InstanceInUse as e:
            # replaced while cut off: stop as if told to, the job in hand gets its grace
            log.error("%s", e.message)
            self.displaced = e
            self.next_heartbeat = float("inf")
            self.shutdown.request()

    def _write_record(self, state: InstanceState) -> None:
        """The instance record is the heartbeat: one blob put, listed with its metadata."""
        b, r = self.baseline, self.registration
        r.write(r.record(state, b.version, b.failure, b.high_water.mark))
        self.next_heartbeat = time.monotonic() + self.settings.heartbeat_s

    # --- reboot ----------------------------------------------------------------------------

    def _reboot_after_settling(self) -> None:
        if self.settings.reboot_command:
            self.reboot_pending = True

    def _until_ok(self, what: str, fn: Callable[[], None]) -> None:
        backoff = IdleBackoff(0.5, 30.0)
        while True:
            try:
                fn()
                return
            except AccessDenied:
                raise
            except StorageError as e:
                log.warning("%s: %s; retrying", what, e)
                if self.shutdown.wait(backoff.idle()):
                    raise
