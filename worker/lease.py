"""A claim on a queue message: Azure's visibility timeout is the lease, the pop receipt its
token.

Facts that force this shape:

* ``update_message`` returns a new pop receipt and the old one is dead at once, so the lease
  always holds the latest message object and nothing else keeps a copy.
* A stale receipt (400 PopReceiptMismatch) or a vanished message (404) means the lease is
  lost: the message may already be running elsewhere. From then on the claim must not report
  success and must not delete.
* If renewals keep failing transiently until the visibility timeout passes, the lease is
  lost too, whatever the server later says.
"""

from __future__ import annotations

import logging
import time

from rolecall.schemas.errors import LeaseLost, NotFound, StorageError
from rolecall.storage.clients import Message, Storage

log = logging.getLogger(__name__)


class Lease:
    def __init__(
        self, storage: Storage, msg: Message, visibility_s: int, claimed_at: float
    ) -> None:
        self.storage = storage
        self.msg = msg
        self.visibility_s = visibility_s
        #: monotonic time by which the server will make the message visible again; measured
        #: from *before* the receive request, so it errs on the early side
        self.expires_at = claimed_at + visibility_s
        self.lost = False
        self.renewals = 0
        #: set once the message decodes, so every lease-loss log line names its job
        self.job_id: str | None = None
        #: handed to the job pipeline: from then on only its settlement may end the lease
        self.started = False

    @property
    def remaining(self) -> float:
        return self.expires_at - time.monotonic()

    @property
    def renewal_due(self) -> bool:
        return not self.lost and self.remaining <= self.visibility_s / 2

    def renew(self) -> bool:
        """Extend the lease by a full visibility timeout. False once the lease is lost."""
        if self.lost:
            return False
        started = time.monotonic()
        try:
            self.msg = self.storage.extend(self.msg, self.visibility_s)
        except (LeaseLost, NotFound):
            self.lose("stale pop receipt")
            return False
        except StorageError as e:
            if self.remaining <= 0:
                self.lose(f"could not renew before expiry ({e.reason})")
            return not self.lost
        self.expires_at = started + self.visibility_s
        self.renewals += 1
        return True

    def ensure(self, margin_s: float) -> bool:
        """Before starting work on a held message: make sure the lease will not lapse soon."""
        if self.lost or self.remaining <= 1.0:
            self.lost = True
            return False
        return self.remaining >= margin_s or self.renew()

    def release(self, delay_s: int = 0) -> None:
        """Make the message visible again after ``delay_s`` (0: at once), for someone else."""
        if self.lost:
            return
        try:
            self.msg = self.storage.extend(self.msg, delay_s)
        except (LeaseLost, NotFound):
            self.lose("stale pop receipt on release")
        except StorageError as e:
            log.warning("release failed; the message reappears when its lease expires: %s", e)
        self.lost = True  # released: it is no longer ours either way

    def delete(self) -> bool:
        """Finish the claim. False if the lease was lost (someone else owns the message)."""
        if self.lost:
            return False
        try:
            self.storage.delete(self.msg)
        except LeaseLost:
            self.lose("stale pop receipt on delete")
            return False
        self.lost = True
        return True

    def lose(self, why: str) -> None:
        """Give the lease up as lost, once, with a log line naming the job: the message will
        be delivered again, maybe elsewhere."""
        if not self.lost:
            extra = {"queue": self.msg.queue, "message_id": self.msg.id, "job_id": self.job_id}
            log.warning("lease lost on %s: %s", self.msg.queue, why, extra=extra)
        self.lost = True
