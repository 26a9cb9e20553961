"""What happens to a job message after an attempt, decided in one place.

The claim only carries settlements out (ack, retry, release, dead-letter); this module decides
which, as dramatiq's Retries middleware decides after each message and its consumer only acks
or nacks. Attempts are counted by the queue (the dequeue count) at pickup, so an attempt that
killed its process still counts, and a message whose earlier attempts all died without a
result reaches its limit here instead of looping forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rolecall.schemas.events import Outcome
from rolecall.worker.claim import Ack, Release, Retry

#: Retry delays double with the attempt number, capped, so a failing job does not spin.
MAX_RETRY_DELAY_S = 600


@dataclass(frozen=True)
class GiveUp:
    """Dead-letter the message: ``reason`` is the short code, ``message`` says why."""

    reason: str
    message: str
    outcome: Outcome


def before_attempt(
    *, attempt: int, max_attempts: int, not_after: datetime | None, now: datetime
) -> GiveUp | None:
    """Refuse before running: out of attempts (earlier ones died without a result), or
    claimed after the job's delivery deadline."""
    if attempt > max_attempts:
        return GiveUp(
            "attempts_exhausted",
            f"attempts exhausted: claimed {attempt} times, at most {max_attempts} allowed; "
            "earlier attempts left no result",
            Outcome.REJECTED,
        )
    if not_after is not None and now > not_after:
        return GiveUp(
            "expired", f"claimed after its deadline {not_after.isoformat()}", Outcome.EXPIRED
        )
    return None


def after_attempt(
    outcome: Outcome | None, *, attempt: int, max_attempts: int, retry_delay_s: int
) -> Ack | Retry | Release | GiveUp:
    """``outcome`` None means the agent stopped the job itself (shutdown): that is not the
    job's failure, so the message goes back at once for another instance."""
    if outcome is None:
        return Release()
    if outcome.ok:
        return Ack()
    if attempt < max_attempts:
        return Retry(retry_delay(attempt, retry_delay_s))
    return GiveUp(
        outcome.value, f"failed on its last attempt ({attempt} of {max_attempts})", outcome
    )


def retry_delay(attempt: int, base_s: int) -> int:
    return int(min(MAX_RETRY_DELAY_S, base_s * 2 ** (attempt - 1)))
