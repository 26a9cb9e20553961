"""Poison records: what the worker writes when it refuses a message, and why.

A poisoned message is moved to ``<queue>-poison`` with its reason, the error, the last output
and the original text, so an operator can read it (``rolecall poison show``) and, once the
cause is fixed, requeue it. The original is truncated if keeping it whole would break the
64 KiB message limit; such a message was garbage anyway (real envelopes are a few KB).
"""

from __future__ import annotations

import hashlib

from rolecall.schemas.base import tail, utcnow
from rolecall.schemas.jobs import JobEnvelope
from rolecall.schemas.records import PoisonRecord
from rolecall.storage.clients import Message

#: Keeps the encoded record (original + metadata, then base64) under 64 KiB.
_ORIGINAL_LIMIT = 40 * 1024


def poison_record(
    msg: Message,
    reason: str,
    error: str,
    *,
    job: JobEnvelope | None = None,
    instance: str,
    incarnation: str,
    last_output: str = "",
) -> PoisonRecord:
    original = msg.content
    truncated = len(original) > _ORIGINAL_LIMIT
    if truncated:
        digest = hashlib.sha256(original.encode()).hexdigest()
        original = f"{original[:_ORIGINAL_LIMIT]}… (truncated; sha256 {digest})"
    return PoisonRecord(
        source_queue=msg.queue,
        reason=reason,
        error=error[:4096],
        original=original,
        original_truncated=truncated,
        message_id=msg.id,
        dequeue_count=msg.dequeue_count,
        job_id=job.job_id if job else None,
        run_id=job.run_id if job else None,
        instance=instance,
        incarnation=incarnation,
        poisoned_at=utcnow(),
        last_output=tail(last_output),
    )
