"""Operators' view of poison queues: list, show, purge (requeue: controller/requeue.py).

Listing peeks (no lease taken); requeue and purge must claim messages to delete them, and
release the ones they leave (``storage.sweep``) so nothing else is disturbed.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from rolecall.schemas.codec import decode_message
from rolecall.schemas.errors import ContractError, NotFound
from rolecall.schemas.names import POISON_SUFFIX
from rolecall.schemas.records import PoisonRecord
from rolecall.schemas.redact import MASK, redact
from rolecall.storage.clients import Message, Storage
from rolecall.storage.sweep import sweep


@dataclass(frozen=True)
class PoisonEntry:
    queue: str
    message_id: str
    record: PoisonRecord | None  # None: not even the poison record decodes
    raw: str


def poison_queues(storage: Storage, role: str | None = None) -> list[str]:
    names = storage.names
    if role is not None:
        queues = [names.poison_queue(names.role_queue(role))]
        from rolecall.controller.fleet import list_instances

        queues += [
            names.poison_queue(names.instance_queue(s.instance))
            for s in list_instances(storage, role)
        ]
        return queues
    return [q for q in storage.list_queues(names.queue_prefix) if q.endswith(POISON_SUFFIX)]


def entry_of(m: Message) -> PoisonEntry:
    try:
        record: PoisonRecord | None = decode_message(m.content, PoisonRecord)
    except ContractError:
        record = None
    return PoisonEntry(m.queue, m.id, record, m.content)


def masked(record: PoisonRecord) -> dict[str, object]:
    """The record for display: the original message decoded (it is base64 JSON on the
    queue) with the values of secret environment variables masked, and the last output
    redacted of them. Requeue still sends the original, untouched. A message that is not
    base64 JSON stays as it was received."""
    data = record.model_dump(mode="json")
    job = _decoded(record.original)
    if job is None:
        return data
    secrets: list[str] = []
    env = job.get("execution", {}).get("env") if isinstance(job.get("execution"), dict) else None
    for var in env if isinstance(env, list) else []:
        if isinstance(var, dict) and var.get("secret") and isinstance(var.get("value"), str):
            secrets.append(var["value"])
            var["value"] = MASK
    data["original"] = job
    data["last_output"] = redact(record.last_output, [s for s in secrets if s])
    return data


def _decoded(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error):
        return None
    return data if isinstance(data, dict) else None


def list_poison(storage: Storage, role: str | None = None) -> list[PoisonEntry]:
    out: list[PoisonEntry] = []
    for q in poison_queues(storage, role):
        try:
            out += [entry_of(m) for m in storage.peek(q, 32)]
        except NotFound:
            continue
    return out


def purge(storage: Storage, queue: str, message_id: str | None = None) -> int:
    """Delete one message (every one if ``message_id`` is None); release the rest."""
    return sweep(storage, queue, lambda m: message_id in (None, m.id), visibility_s=120)
