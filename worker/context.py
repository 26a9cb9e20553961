"""A running job's one link to the agent.

The wait loop in ``executor`` sleeps on the child in short slices. Between slices the agent
has duties (renew this job's lease, post finished completions, keep its heartbeat), and it may
want the job stopped (shutdown past its grace). Both travel down agent → jobs → runner →
executor as this one object, instead of two callbacks threaded through four signatures; only
the agent knows what its duties are.
"""

from __future__ import annotations

from typing import Protocol

from rolecall.worker.claim import Claim


class Duties(Protocol):
    def between_slices(self, claim: Claim | None) -> None:
        """Renew ``claim`` if due, flush what the outbox owes, heartbeat."""

    def should_kill_job(self) -> bool:
        """True once the running job must be stopped (a second signal, or grace over)."""


class JobContext:
    def __init__(self, duties: Duties, claim: Claim | None = None) -> None:
        self.duties = duties
        #: the queue message the job came from; None for a baseline step
        self.claim = claim
        #: the run of the job, once its message is decoded (cancels name runs)
        self.run_id: str | None = None
        #: a cancel for the run arrived while the job ran: stop it, report it cancelled
        self.cancelled = False

    def tick(self) -> None:
        self.duties.between_slices(self.claim)

    def should_kill(self) -> bool:
        return self.cancelled or self.duties.should_kill_job()
