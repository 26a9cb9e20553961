"""Binding a job to the queue message it arrived in, so a signed job runs only as the message
it was sent in.

A signature says who wrote a job, not when it was sent. Every worker of a role may send to
and update messages on its role queue (the ``update`` right that renews leases also replaces
content), so without more a compromised instance could put an old signed job back, or claim
a fresh message and replace its content with an old signed job. What it cannot do is choose
a message's insertion time: the queue service stamps it when the message is added, and an
update keeps it. The sender signs ``sent_at`` at the moment it sends (controller/signing.py,
``Stamp``), and here the two must agree within a small window (``replay_window_s``, 120 s by
default: the send's latency plus the sender's clock error).

What remains (docs/security.md): within the window a claimed message's content can be
swapped for another job sent in the same window; and a claimed message can be deleted (a
target that never completes). Both need a compromised instance of the same role.
"""

from __future__ import annotations

from datetime import datetime

from rolecall.schemas.errors import Replayed
from rolecall.schemas.jobs import JobEnvelope


def check_binding(
    job: JobEnvelope, inserted_on: datetime | None, *, signed: bool, window_s: float
) -> None:
    """Raise Replayed unless ``job`` was sent within ``window_s`` of its message's insertion.

    A signed job without ``sent_at`` is refused: anyone can replay what carries no send time
    (such jobs come from controllers before contract 1.4, or from long ago). Unsigned jobs
    (an agent told to accept them) are checked only when they carry one: whoever can write
    an unsigned job can write any ``sent_at`` too."""
    if job.sent_at is None:
        if signed:
            raise Replayed(
                "signed job carries no send time, so it cannot be bound to its message; "
                "send it again with a controller of contract 1.4 or later"
            )
        return
    if inserted_on is None:
        raise Replayed("the queue did not say when this message was inserted")
    gap = (inserted_on - job.sent_at).total_seconds()
    if abs(gap) > window_s:
        raise Replayed(
            f"sent at {job.sent_at.isoformat()} but its message was inserted at "
            f"{inserted_on.isoformat()} ({gap:+.0f} s, beyond {window_s:g} s): an old job "
            "sent again or a message's content replaced, or the sender's clock is wrong"
        )
