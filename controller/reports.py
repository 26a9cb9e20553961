"""The fold believes nothing it did not send.

A report (hello, started note, completion) comes from an instance, and an instance may be
compromised. So before a report counts, it must have arrived through a channel its role
alone can write (a results queue of that role), be signed by its sender where the sender
has an enrolled key, speak only for its sender, and fit the run it names: a run that
exists, of that role, a target that run dispatched (for ``--any``, any instance of the
role), an attempt the job allows, the job id and log the controller itself would name. Names
that reach storage paths were already checked when the batch was decoded
(``schemas.base.Id``).

A report that fails is set aside with its reason (the fold writes it to the queue's poison
queue) and the others in its message still count. A whole message is refused only when it
cannot be read or its signature is wrong.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from rolecall.controller.enrolment import EnrolledKeys, signed_by
from rolecall.schemas.codec import decode_document, read_b64_json
from rolecall.schemas.errors import ContractError, RolecallError
from rolecall.schemas.events import Completion, EventBatch, Hello, Outcome, Started
from rolecall.schemas.names import Names, name_key
from rolecall.schemas.runs import RunMode, RunRecord
from rolecall.schemas.version import SUPPORTED_MAJORS
from rolecall.storage.clients import Storage
from rolecall.storage.documents import read_document

#: outcomes that mean the job ran: their attempt cannot exceed the job's max_attempts
_RAN = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.TIMED_OUT, Outcome.REBOOT_REQUIRED})
#: a stored run definition is re-read after this long (its dispatch cursor moves)
RUNS_TTL_S = 30.0


class Refused(RolecallError):
    """One report set aside; ``reason`` says why."""


@dataclass
class Checked:
    """What one message contributes once checked."""

    completions: dict[str, list[Completion]] = field(default_factory=lambda: defaultdict(list))
    started: dict[str, list[Started]] = field(default_factory=lambda: defaultdict(list))
    hellos: list[Hello] = field(default_factory=list)
    refused: list[tuple[Refused, dict[str, Any]]] = field(default_factory=list)
    #: runs named that do not exist (yet: a run's first wave goes out before its record),
    #: with the role their reports gave
    unknown_runs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunDef:
    record: RunRecord
    position: dict[str, int]  # a split run's targets, by their place in dispatch order


class RunDefinitions:
    """Run records as the fold needs them, read once and kept for ``RUNS_TTL_S``."""

    def __init__(self, storage: Storage) -> None:
        from rolecall.controller.results import Results

        self.storage = storage
        self.results = Results(storage)
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[float, RunDef | None]] = {}

    def get(self, run_id: str, *, fresh: bool = False) -> RunDef | None:
        with self._lock:
            cached = self._runs.get(run_id)
        if cached is not None and not fresh and time.monotonic() - cached[0] < RUNS_TTL_S:
            return cached[1]
        found = read_document(
            self.storage, self.storage.names.state_container, Names.run_blob(run_id), RunRecord
        )
        run = None
        if found is not None:
            record = found[0]
            order = (
                record.order
                if record.order is not None
                else (self.results.order(run_id) if record.split else [])
            )
            run = RunDef(record, {name: i for i, name in enumerate(order)})
        with self._lock:
            self._runs[run_id] = (time.monotonic(), run)
        return run


class ReportChecker:
    def __init__(self, storage: Storage, keys: EnrolledKeys, runs: RunDefinitions) -> None:
        self.storage = storage
        self.names = storage.names
        self.keys = keys
        self.runs = runs

    def check(self, role_key: str | None, text: str) -> Checked:
        """Check one batch that came through role ``role_key``'s channel (None: the legacy
        events queue, any role's); raises ContractError to refuse all of it."""
        data = _json(text)
        batch = decode_document(json.dumps(data).encode(), EventBatch, SUPPORTED_MAJORS)
        sender = batch.sender
        who = batch.events[0].role if role_key is None and batch.events else None
        key = self.keys.key_for(role_key or who or "", sender) if (role_key or who) else None
        if key is not None and not signed_by(data, key):
            raise ContractError(f"not signed by the key enrolled for {sender}",
                                reason="bad_report_signature")  # fmt: skip
        out = Checked()
        raw_events = data.get("events", [])
        for raw, event in zip(raw_events, batch.events, strict=True):
            self._one(out, event, raw, role_key, sender)
        for raw, note in zip(data.get("started", []), batch.started, strict=True):
            self._one(out, note, raw, role_key, sender)
        return out

    def _one(
        self, out: Checked, event: Completion | Hello | Started, raw: dict[str, Any],
        role_key: str | None, sender: str,
    ) -> None:  # fmt: skip
        try:
            if event.instance != sender:
                raise Refused(f"speaks for {event.instance!r}, sent by {sender!r}",
                              reason="foreign_instance")  # fmt: skip
            if isinstance(event, Hello):
                _check_role(event.role, role_key)
                out.hellos.append(event)
                return
            run = self.runs.get(event.run_id)
            if run is None:
                out.unknown_runs[event.run_id] = getattr(event, "role", "")
                raise Refused(f"no run {event.run_id!r}", reason="unknown_run")
            self._fits(run, event, role_key)
        except Refused as e:
            out.refused.append((e, raw))
            return
        if isinstance(event, Started):
            out.started[event.run_id].append(event)
        else:
            out.completions[event.run_id].append(event)

    def _fits(self, run: RunDef, event: Completion | Started, role_key: str | None) -> None:
        record = run.record
        role = event.role if isinstance(event, Completion) else record.role
        _check_role(role, role_key)
        if name_key(role) != name_key(record.role):
            raise Refused(f"run {record.run_id} is for role {record.role!r}", reason="wrong_role")
        step = event.step if isinstance(event, Completion) else None
        expected = _job_id(record, event.instance, step)
        if event.job_id != expected:
            raise Refused(f"job {event.job_id!r} is not this run's job for {event.instance!r}",
                          reason="wrong_job")  # fmt: skip
        if record.mode is RunMode.EACH and not self._dispatched(run, event.instance):
            raise Refused(f"{event.instance!r} is not a target this run dispatched",
                          reason="not_dispatched")  # fmt: skip
        if isinstance(event, Completion):
            _check_attempt(record, event)
            _check_log(self.names.logs_container, event)

    def _dispatched(self, run: RunDef, instance: str) -> bool:
        if not run.record.split:
            t = run.record.targets.get(instance)
            return t is not None and t.dispatched_at is not None
        where = run.position.get(instance)
        if where is None or instance in run.record.skipped:
            return False
        if where < run.record.dispatched:
            return True
        fresh = self.runs.get(run.record.run_id, fresh=True)  # the cursor may have moved
        return fresh is not None and where < fresh.record.dispatched


def _json(text: str) -> dict[str, Any]:
    data = read_b64_json(text)
    if not isinstance(data, dict):
        raise ContractError("message is not a JSON object")
    return data


def _check_role(role: str, role_key: str | None) -> None:
    if role_key is not None and name_key(role) != role_key:
        raise Refused(f"reports for role {role!r} cannot come through another role's channel",
                      reason="wrong_role")  # fmt: skip


def _job_id(record: RunRecord, instance: str, step: int | None) -> str:
    if record.mode is RunMode.BASELINE:
        return f"{record.run_id}.{name_key(instance)}.s{step}"
    return Names.job_id(record.run_id, "any" if record.mode is RunMode.ANY else instance)


def _check_attempt(record: RunRecord, c: Completion) -> None:
    limit = (
        1
        if record.mode is RunMode.BASELINE
        else (record.template.max_attempts if record.template else 1)
    )
    if c.outcome in _RAN and not c.replayed and not 1 <= c.attempt <= limit:
        raise Refused(f"attempt {c.attempt} cannot exist: the job allows {limit}",
                      reason="impossible_attempt")  # fmt: skip


def _check_log(container: str, c: Completion) -> None:
    if c.log_blob is None:
        return
    where, path = c.log_blob.split("/", 1) if "/" in c.log_blob else ("", "")
    if where != container or not Names.is_log_blob(path, c.run_id, c.job_id, c.instance, c.attempt):
        raise Refused(f"log {c.log_blob[:120]!r} is not where this job's log goes",
                      reason="wrong_log")  # fmt: skip
