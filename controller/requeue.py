"""Requeuing poisoned messages, trusting nothing a worker wrote (issue 15, finding 4).

A poison queue is written by workers: every instance of a role may send to it, so a
compromised one can plant a record whose "original" is its own code, an altered job, or a
copy of a signed job that already ran. And a genuine original cannot simply be sent back: it
carries the send time it was first sent with, which a worker compares with the new message's
insertion time and refuses as ``replayed`` (worker/binding.py).

So the original is only a claim. Requeue decodes it as a job, checks its signature against the
keys this controller signs with (its signing key's public half and its ``trusted_keys``),
checks that it is addressed to the queue it would go back to, within its deadline, and that
its run does not show its target done already; then it sends the job re-stamped (a fresh
``sent_at``) and re-signed, as any other send (``Stamp``). A record whose reason is
``replayed`` is an old message sent again: never sent once more. Refused records stay in the
poison queue, each reported in one line, for the operator to read and purge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rolecall.controller.poison import PoisonEntry, entry_of
from rolecall.controller.signing import Stamp
from rolecall.controller.store import RunStore
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_message, read_b64_json
from rolecall.schemas.errors import ContractError, SignatureError, UnknownRun
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunRecord
from rolecall.storage.clients import Message, Storage
from rolecall.storage.sweep import sweep

if TYPE_CHECKING:
    from rolecall.controller.signing import Signer
    from rolecall.schemas.signing import TrustedKeys

#: what a failed signature check means for a record the controller is asked to send again
_UNTRUSTED = {
    "unsigned": "unsigned: not a job this controller signed",
    "untrusted_key": "signed by a key this controller does not hold",
}


@dataclass
class Requeued:
    sent: int = 0
    #: one line per record left in the poison queue: "MESSAGE_ID: why"
    refused: list[str] = field(default_factory=list)


class Refused(Exception):
    """This record is not sent again; the message says why."""


@dataclass
class Requeue:
    """Vets and re-sends the originals of one poison queue. ``keys`` None: the operator sent
    unsigned (``--unsigned``, no signing key), so there is nothing to check signatures by."""

    storage: Storage
    queue: str
    keys: TrustedKeys | None
    signer: Signer | None
    _runs: dict[str, RunRecord | None] = field(default_factory=dict)

    @property
    def source(self) -> str:
        # from the queue's name, never from the record's own ``source_queue``
        return Names.source_of_poison(self.queue)

    def run(self, message_id: str | None = None) -> Requeued:
        done = Requeued()
        stamp = Stamp(self.signer)

        def take(m: Message) -> bool:
            if message_id not in (None, m.id):
                return False
            try:
                job = self.vet(entry_of(m))
            except Refused as e:
                done.refused.append(f"{m.id}: {e}")
                return False  # left in the poison queue: evidence, and the operator's to purge
            self.storage.send(self.source, stamp(job))
            done.sent += 1
            return True

        sweep(self.storage, self.queue, take, visibility_s=120)
        return done

    def vet(self, e: PoisonEntry) -> dict[str, Any]:
        """The original job in its sent JSON form, or Refused."""
        r = e.record
        if r is None:
            raise Refused("not a poison record")
        if r.original_truncated:
            raise Refused("its original was truncated")
        if r.reason == "replayed":
            raise Refused("refused as replayed: an old message sent again is not sent once more")
        try:
            job = decode_message(r.original, JobEnvelope)
            data: dict[str, Any] = read_b64_json(r.original)
        except ContractError as err:
            raise Refused(f"its original is not a job: {err.message}") from err
        if self.keys is not None:
            try:
                self.keys.verify(r.original, True)
            except SignatureError as err:
                raise Refused(_UNTRUSTED.get(err.reason, err.message)) from err
        if job.not_after is not None and job.not_after < utcnow():
            raise Refused(
                f"job {job.job_id} is past its deadline ({job.not_after:%Y-%m-%d %H:%M}Z)"
            )
        self._addressed_here(job)
        self._not_done(job)
        return data

    def _addressed_here(self, job: JobEnvelope) -> None:
        names = self.storage.names
        wanted = (
            names.instance_queue(job.target.instance)
            if job.target.instance is not None
            else names.role_queue(job.role)
        )
        if wanted != self.source:
            raise Refused(f"job {job.job_id} is for {wanted}, not {self.source}")

    def _not_done(self, job: JobEnvelope) -> None:
        """A copy of a job its run shows done would run it again: the controller's record,
        not the worker's, decides."""
        run = self._run(job.run_id)
        if run is None:
            return
        for key, t in run.targets.items():
            if Names.job_id(run.run_id, key) == job.job_id and t.state.ok:
                raise Refused(f"job {job.job_id} already {t.state.value} in run {run.run_id}")

    def _run(self, run_id: str) -> RunRecord | None:
        if run_id not in self._runs:
            try:
                self._runs[run_id] = RunStore(self.storage).get(run_id)
            except UnknownRun:  # a control job, or a run cleaned up: its deadline still holds
                self._runs[run_id] = None
        return self._runs[run_id]
