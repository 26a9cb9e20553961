"""Cancelling a run while its job runs here.

``rolecall cancel`` puts a ``cancel`` job on the instance queue of every instance that may be
running the run (instance queues are writable by the controller alone). The claim loop
handles such a message before the other jobs of its batch: the run is remembered as cancelled
and its jobs are refused from then on. A job already running learns of it when its lease is
renewed (every half lease, 30 s by default): the agent peeks at its instance queue, a look
that claims nothing and costs one transaction, and if a cancel for the running job's run is
there, the job is stopped and reported ``cancelled``.
"""

from __future__ import annotations

import logging

from rolecall.schemas.codec import decode_message, read_b64_json
from rolecall.schemas.errors import AccessDenied, ContractError, RolecallError, StorageError
from rolecall.schemas.jobs import JobEnvelope
from rolecall.storage.clients import Storage
from rolecall.worker.trust import Verify

log = logging.getLogger(__name__)


def is_cancel(text: str) -> bool:
    """Whether a message asks to cancel a run (read loosely, only to order a batch)."""
    try:
        data = read_b64_json(text)
    except ContractError:
        return False
    return isinstance(data, dict) and data.get("action") == "cancel"


class CancelWatch:
    def __init__(self, storage: Storage, queue: str, verify: Verify) -> None:
        self.storage = storage
        self.queue = queue
        self.verify = verify
        self._can_peek = True

    def requested(self, run_id: str) -> bool:
        """Whether a (verified) cancel for ``run_id`` waits on this instance's queue."""
        if not self._can_peek:
            return False
        try:
            waiting = self.storage.peek(self.queue, 32)
        except AccessDenied:
            # credentials issued before 0.2 may claim but not peek: a cancel then takes
            # effect when the running job ends
            log.warning("cannot look for cancels on %s (no read right); a cancel will wait "
                        "for the running job to end", self.queue)  # fmt: skip
            self._can_peek = False
            return False
        except StorageError:
            return False  # asked again at the next renewal
        for m in waiting:
            try:
                job = decode_message(m.content, JobEnvelope)
                if job.action == "cancel" and job.cancel_run == run_id:
                    self.verify(m.content, True)
                    return True
            except (ContractError, RolecallError):
                continue  # not a cancel we may act on; the claim loop judges it
        return False
