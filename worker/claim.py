"""The life of one claimed queue message: one object, explicit states, and the only code that
changes them.

    CLAIMED ──start──▶ RUNNING ──settle──▶ SETTLING ──▶ SETTLED
       │                  │                   │
       └──────────────────┴───────────────────┴──────▶ LOST

* **CLAIMED**: received with a visibility timeout. Azure's visibility timeout is the lease and
  the pop receipt its token. A batch is claimed at once; messages wait here for their turn.
* **RUNNING**: handed to the job pipeline. From here only a settlement ends the claim, because
  the job's effect may already have happened.
* **SETTLING**: a settlement (ack, retry, release, dead-letter) was asked for and has not
  landed yet, usually because its completion waits in the outbox or storage refused it.
* **SETTLED**: deleted, made visible again, or dead-lettered. Nothing more to do.
* **LOST**: the message may be someone else's now. Never report success for it.

Facts that force this shape:

* ``update_message`` returns a new pop receipt and the old one is dead at once, so the claim
  holds the latest message and nothing else keeps a copy.
* A stale receipt (400 PopReceiptMismatch) or a vanished message (404) means the lease is lost:
  the message may already be running elsewhere.
* If renewals or settlements keep failing transiently until the visibility timeout passes, the
  lease is lost too, whatever the server later says.
* Dead-lettering is two requests (send the record, delete the original). If the delete fails
  after the send, trying again must only delete: the claim remembers the record went out.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from enum import Enum

from rolecall.schemas.codec import encode_message
from rolecall.schemas.errors import LeaseLost, NotFound, StorageError
from rolecall.schemas.records import PoisonRecord
from rolecall.storage.clients import Message, Storage

log = logging.getLogger(__name__)


class ClaimState(str, Enum):
    CLAIMED = "claimed"
    RUNNING = "running"
    SETTLING = "settling"
    SETTLED = "settled"
    LOST = "lost"


# --- what can be done with a claim once its job is decided ---------------------------------


@dataclass(frozen=True)
class Ack:
    """Done: delete the message (after its completion is on the events queue)."""


@dataclass(frozen=True)
class Retry:
    """Failed, attempts left: the message comes back after ``delay_s`` for another attempt."""

    delay_s: int


@dataclass(frozen=True)
class Release:
    """Not ours to finish (shutdown, never started): visible again at once, for anyone."""


@dataclass(frozen=True)
class DeadLetter:
    """Refused or out of attempts: the record goes to ``<queue>-poison``, then the original is
    deleted."""

    record: PoisonRecord


Settlement = Ack | Retry | Release | DeadLetter


class Claim:
    def __init__(
        self, storage: Storage, msg: Message, visibility_s: int, claimed_at: float
    ) -> None:
        self.storage = storage
        self.msg = msg
        self.visibility_s = visibility_s
        #: monotonic time by which the server makes the message visible again; measured from
        #: *before* the receive request, so it errs on the early side
        self.expires_at = claimed_at + visibility_s
        self.state = ClaimState.CLAIMED
        self.renewals = 0
        #: named once the message decodes, so every lease-loss log line names its job
        self.job_id: str | None = None
        self._dead_lettered = False

    def __repr__(self) -> str:
        return f"Claim({self.msg.queue}/{self.msg.id}, {self.state.value}, job={self.job_id})"

    # --- the lease -------------------------------------------------------------------------

    @property
    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    @property
    def held(self) -> bool:
        """Still ours: not settled, not lost."""
        return self.state in (ClaimState.CLAIMED, ClaimState.RUNNING, ClaimState.SETTLING)

    @property
    def renewal_due(self) -> bool:
        return self.held and self.remaining <= self.visibility_s / 2

    @property
    def running_short(self) -> bool:
        """Less than a third of the lease left: a pending settlement should go out now."""
        return self.held and self.remaining < self.visibility_s / 3

    def start(self, margin_s: float) -> bool:
        """Hand the message to the job pipeline, making sure the lease will not lapse soon.
        False if it already has (the message is someone else's by now)."""
        if self.state is not ClaimState.CLAIMED:
            return False
        if self.remaining <= 1.0:
            self._lose("lease ran out before the job started", quiet=True)
            return False
        self.state = ClaimState.RUNNING
        return self.remaining >= margin_s or self.renew()

    def renew(self) -> bool:
        """Extend the lease by a full visibility timeout. False once the lease is lost."""
        if not self.held:
            return False
        started = time.monotonic()
        try:
            self.msg = self.storage.extend(self.msg, self.visibility_s)
        except (LeaseLost, NotFound):
            self._lose("stale pop receipt")
            return False
        except StorageError as e:
            if self.remaining <= 0:
                self._lose(f"could not renew before expiry ({e.reason})")
            return self.held
        self.expires_at = started + self.visibility_s
        self.renewals += 1
        return True

    # --- settling --------------------------------------------------------------------------

    def settle(self, settlement: Settlement) -> bool:
        """Carry out ``settlement``. True when nothing is left to do (settled, or lost);
        False when storage refused and the lease still has time: call again later.

        A settlement that keeps failing is tried for as long as the lease holds: once it
        lapses the message is delivered again, maybe on another instance, where this
        incarnation's marker cannot stop a re-run."""
        if not self.held:
            return True
        self.state = ClaimState.SETTLING
        try:
            match settlement:
                case Ack():
                    self.storage.delete(self.msg)
                case Retry(delay_s=delay):
                    self.msg = self.storage.extend(self.msg, delay)
                case Release():
                    self.storage.release(self.msg)
                case DeadLetter(record=record):
                    if not self._dead_lettered:
                        poison = self.storage.names.poison_queue(self.msg.queue)
                        self.storage.send(poison, encode_message(record), create=True)
                        self._dead_lettered = True
                    self.storage.delete(self.msg)
        except (LeaseLost, NotFound):
            self._lose(f"stale pop receipt on {_verb(settlement)}")
            return True
        except StorageError as e:
            if self.remaining > 0:
                log.warning(
                    "could not %s message %s, will retry: %s", _verb(settlement), self.msg.id, e,
                    extra=self._extra(),
                )  # fmt: skip
                return False
            self._lose(f"could not {_verb(settlement)} before expiry ({e.reason})")
            return True
        self.state = ClaimState.SETTLED
        return True

    def release(self) -> None:
        """Give an unstarted claim back at once (shutdown, or a long job letting go of the
        rest of its batch). One try: if storage refuses, the message reappears when the lease
        lapses anyway, and waiting for storage would only delay the shutdown."""
        if self.state is not ClaimState.CLAIMED:
            return
        try:
            self.storage.release(self.msg)
            self.state = ClaimState.SETTLED
        except (LeaseLost, NotFound):
            self._lose("stale pop receipt on release")
        except StorageError as e:
            log.warning("release failed; the message reappears when its lease lapses: %s", e,
                        extra=self._extra())  # fmt: skip
            self.state = ClaimState.LOST

    # --- losing ----------------------------------------------------------------------------

    def _lose(self, why: str, *, quiet: bool = False) -> None:
        """Give the lease up as lost, once, with a log line naming the job: the message will
        be delivered again, maybe elsewhere."""
        if self.held and not quiet:
            log.warning("lease lost on %s: %s", self.msg.queue, why, extra=self._extra())
        self.state = ClaimState.LOST

    def _extra(self) -> dict[str, object]:
        return {"queue": self.msg.queue, "message_id": self.msg.id, "job_id": self.job_id}


def _verb(settlement: Settlement) -> str:
    return {Ack: "delete", Retry: "retry", Release: "release", DeadLetter: "dead-letter"}[
        type(settlement)
    ]
