"""The instance record: this agent's heartbeat, and its hold on the instance name.

Instance names are stable across reimages, so a new incarnation under an old name is normal.
Two agents running under one name at once is not (a copied config, a second state directory,
a test left running): they overwrite each other's record, both apply the baseline, and the
next ``--each`` sees one of them at random. So the record says who holds the name (its
incarnation, host, process and the OS boot), every write is conditional on the ETag of this
agent's own last write, and:

* At start the record is read (one GET) and the name taken over if its holder is gone: the
  same incarnation (a plain restart), a ``stopped`` record, a record older than the lost
  window, or a holder this machine can see has ended (SIGKILLed, or a previous OS boot: a
  reimage). A holder this machine sees running is a second agent: refuse. A holder on
  another machine is watched for one heartbeat and a half: if it writes, refuse; if not, it
  missed a heartbeat and is gone.
* A heartbeat that finds the record written by someone else means this agent was replaced
  while it was cut off: it stops, so the name keeps one agent.

No blob lease: a lease outlives a SIGKILL, and the successor would have to break it after
the same judgement anyway; a conditional put costs what the plain one did. Credentials that
may not read the record (a SAS bundle issued before 0.3) skip the judgement and write
unconditionally, as agents always did; so does a holder from before contract 1.2.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from rolecall.schemas import __version__
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.errors import (
    AccessDenied,
    ConcurrencyConflict,
    ContractError,
    InstanceInUse,
    NotFound,
)
from rolecall.schemas.events import Hello
from rolecall.schemas.instances import BaselineFailure, Holder
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceRecord, InstanceState
from rolecall.schemas.version import CONTRACT
from rolecall.storage.clients import Storage
from rolecall.worker import host
from rolecall.worker.history import History
from rolecall.worker.identity import Identity

log = logging.getLogger(__name__)

#: A record older than this many of its heartbeats is lost (as controller/fleet.py says).
LOST_AFTER = 2.5
#: A holder elsewhere that wrote nothing for this many of its heartbeats has missed one.
MISSED_AFTER = 1.5


class Verdict(str, Enum):
    TAKE = "take"
    REFUSE = "refuse"
    WATCH = "watch"


@dataclass(frozen=True)
class Found:
    record: InstanceRecord | None  # None: nothing this agent can read as a record
    etag: str
    written: datetime  # by the storage service's clock


@dataclass(frozen=True)
class Watch:
    etag: str
    deadline: float  # monotonic


class Registration:
    def __init__(
        self,
        storage: Storage,
        identity: Identity,
        incarnation: str,
        heartbeat_s: float,
        wait: Callable[[float], bool],
        accepts_unsigned: bool = False,
    ) -> None:
        self.storage = storage
        self.identity = identity
        self.incarnation = incarnation
        #: this agent's start: with the host and pid, what makes a record this agent's own
        self.agent_start = utcnow()
        self.heartbeat_s = heartbeat_s
        self.accepts_unsigned = accepts_unsigned  # said in every record: development only
        self.wait = wait  # sleeps, True if shutdown came meanwhile
        self.container = storage.names.state_container
        self.path = Names.instance_blob(identity.role, identity.instance)
        self.holder = Holder(host=host.host_name(), pid=os.getpid(), os_boot=host.os_boot())
        self.history = History(incarnation)
        self.etag: str | None = None
        #: the record this agent took the name over from: what a reimage did not wipe
        self.previous: InstanceRecord | None = None
        self.held = False
        self.can_read = True

    def record(
        self,
        state: InstanceState,
        baseline_version: int | None,
        failure: BaselineFailure | None,
        high_water: int | None = None,
    ) -> InstanceRecord:
        self.history.applied(baseline_version)
        return InstanceRecord(
            role=self.identity.role, instance=self.identity.instance,
            incarnation=self.incarnation, agent_version=__version__, contract=str(CONTRACT),
            boot_time=self.agent_start, last_seen=utcnow(), state=state,
            baseline_version=baseline_version, heartbeat_s=self.heartbeat_s,
            platform=platform.system(), holder=self.holder, baseline_failure=failure,
            jobs=self.history.jobs, baselines=self.history.baselines,
            transactions=self.storage.meter.snapshot(), storage_errors=self.storage.meter.errors(),
            accepts_unsigned=self.accepts_unsigned or None, baseline_high_water=high_water or None,
        )  # fmt: skip

    def baseline_versions(self) -> list[int | None]:
        """The baseline versions the previous record says this instance took."""
        p = self.previous
        if p is None:
            return []
        return [p.baseline_version, p.baseline_high_water, *(b.version for b in p.baselines)]

    def hello(self, new_incarnation: bool) -> Hello:
        """What this agent says when it has taken the name: who it is, since when."""
        return Hello(
            role=self.identity.role, instance=self.identity.instance,
            incarnation=self.incarnation, new_incarnation=new_incarnation,
            agent_version=__version__, contract=str(CONTRACT), boot_time=self.agent_start,
            platform=platform.platform(terse=True),
        )  # fmt: skip

    # --- taking the name -------------------------------------------------------------------

    def register(self, make: Callable[[], InstanceRecord]) -> bool:
        """Take the instance name and write the first record (``make`` builds it, once the
        history carried from the previous record is known). False if shutdown came while
        watching the holder; InstanceInUse if another running agent holds the name."""
        watch: Watch | None = None
        while True:
            found = self._read()
            if found is None:
                if self._put_first(make()):
                    return True
                continue
            verdict = self._verdict(found, watch)
            if verdict is Verdict.REFUSE:
                raise InstanceInUse(self._refusal(found))
            if verdict is Verdict.TAKE:
                self.history.carry(found.record)
                self.previous = found.record
                if self._replace(make(), found.etag):
                    return True
                continue
            if watch is None:
                watch = self._watch(found)
            if self.wait(min(max(0.2, watch.deadline - time.monotonic()), self._step(found))):
                return False

    def _verdict(self, found: Found, watch: Watch | None) -> Verdict:
        prev = found.record
        if prev is None or prev.holder is None:
            return Verdict.TAKE  # unreadable, or an agent from before the rule
        if prev.state is InstanceState.STOPPED or self._age(found) > LOST_AFTER * prev.heartbeat_s:
            return Verdict.TAKE
        here = self._here(prev.holder, prev.boot_time)
        if here is not host.Process.UNKNOWN:
            return Verdict.TAKE if here is host.Process.GONE else Verdict.REFUSE
        if prev.incarnation == self.incarnation:
            return Verdict.TAKE  # a restart on this disk; its holder cannot be seen from here
        if watch is not None and found.etag != watch.etag:
            return Verdict.REFUSE  # it wrote again: it is running
        if watch is not None and time.monotonic() >= watch.deadline:
            return Verdict.TAKE  # it missed a heartbeat
        return Verdict.WATCH

    def _here(self, holder: Holder, agent_start: datetime) -> host.Process:
        """What this machine knows of ``holder``: UNKNOWN unless it ran here."""
        if holder.host != self.holder.host:
            return host.Process.UNKNOWN
        boot = host.same_boot(holder.os_boot, self.holder.os_boot)
        if boot is None:
            return host.Process.UNKNOWN
        return host.process(holder.pid, agent_start) if boot else host.Process.GONE

    def _watch(self, found: Found) -> Watch:
        assert found.record is not None and found.record.holder is not None
        prev, beat = found.record, found.record.heartbeat_s
        until_lost = LOST_AFTER * beat - self._age(found)
        wait_s = max(0.0, min(MISSED_AFTER * beat + 2.0, until_lost + 1.0))
        log.warning(
            "instance %r is held by incarnation %s on host %s (last heartbeat %.0fs ago); "
            "waiting up to %.0fs for it to miss a heartbeat before taking the name over",
            self.identity.instance, prev.incarnation, prev.holder.host if prev.holder else "?",
            self._age(found), wait_s,
        )  # fmt: skip
        return Watch(found.etag, time.monotonic() + wait_s)

    @staticmethod
    def _step(found: Found) -> float:
        beat = found.record.heartbeat_s if found.record is not None else 60.0
        return min(10.0, max(0.5, beat / 6))

    @staticmethod
    def _age(found: Found) -> float:
        return (utcnow() - found.written).total_seconds()

    # --- heartbeats ------------------------------------------------------------------------

    def write(self, record: InstanceRecord) -> None:
        """One heartbeat: a put conditional on our own last write. InstanceInUse if another
        agent has written the record since (this agent was replaced)."""
        if not self.can_read or self.etag is None:
            self.etag = self._put(record)
            return
        try:
            self.etag = self._put(record, etag=self.etag)
            return
        except (ConcurrencyConflict, NotFound):
            pass
        found = self._read()
        if found is None:
            self.etag = self._put(record, create_only=True)  # storage was reset under us
            return
        if not self._mine(found.record):
            self.held = False
            raise InstanceInUse(self._replaced(found))
        # our own write landed and its reply was lost; the retry met our new ETag
        self.etag = self._put(record, etag=found.etag)

    def _mine(self, record: InstanceRecord | None) -> bool:
        return (
            record is not None
            and record.incarnation == self.incarnation
            and record.holder == self.holder
            and record.boot_time == self.agent_start
        )

    # --- storage ---------------------------------------------------------------------------

    def _read(self) -> Found | None:
        if not self.can_read:
            return None
        try:
            blob = self.storage.get_blob(self.container, self.path)
        except NotFound:
            return None
        except AccessDenied:
            log.warning(
                "cannot read this instance's record, so a second agent under the same name "
                "would go unnoticed; reissue the SAS bundle (`rolecall sas worker`)"
            )
            self.can_read = False
            return None
        try:
            record: InstanceRecord | None = decode_document(blob.data, InstanceRecord)
        except ContractError:
            record = None
        written = blob.last_modified or (record.last_seen if record is not None else utcnow())
        return Found(record, blob.etag, written)

    def _put_first(self, record: InstanceRecord) -> bool:
        try:
            self.etag = self._put(record, create_only=self.can_read)
        except ConcurrencyConflict:
            return False  # someone registered a moment ago: judge them
        self.held = True
        return True

    def _replace(self, record: InstanceRecord, etag: str) -> bool:
        try:
            self.etag = self._put(record, etag=etag)
        except (ConcurrencyConflict, NotFound):
            return False
        self.held = True
        return True

    def _put(
        self, record: InstanceRecord, *, etag: str | None = None, create_only: bool = False
    ) -> str:
        return self.storage.put_blob(
            self.container, self.path, encode_document(record), etag=etag,
            create_only=create_only, metadata=record.to_metadata(),
        )  # fmt: skip

    # --- what to tell the operator ---------------------------------------------------------

    def _who(self, found: Found) -> str:
        prev = found.record
        if prev is None or prev.holder is None:
            return "an agent this one cannot identify"
        h = prev.holder
        where = "on this machine" if h.host == self.holder.host else f"on host {h.host}"
        return f"incarnation {prev.incarnation}, pid {h.pid} {where}"

    def _refusal(self, found: Found) -> str:
        return (
            f"instance {self.identity.instance!r} of role {self.identity.role!r} is held by "
            f"another running agent ({self._who(found)}, last heartbeat "
            f"{self._age(found):.0f}s ago); two agents must not share an instance name: stop "
            "the other one, or give this one its own --instance"
        )

    def _replaced(self, found: Found) -> str:
        return (
            f"instance {self.identity.instance!r} was taken over by another agent "
            f"({self._who(found)}); this agent stops: two agents must not share an "
            "instance name"
        )
