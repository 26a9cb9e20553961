"""What the storage layer (storage/clients.py) hands back: a received message, a blob read,
a blob listed. Plain values, so the worker and the controller hold them without the SDK."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Message:
    """A message received with a visibility timeout: the pop receipt is the lease token."""

    queue: str
    id: str
    pop_receipt: str
    dequeue_count: int
    content: str
    next_visible_on: datetime | None
    inserted_on: datetime | None = None


@dataclass(frozen=True)
class BlobData:
    data: bytes
    etag: str
    metadata: dict[str, str]
    last_modified: datetime | None = None  # the service's clock, not the writer's: liveness


@dataclass(frozen=True)
class BlobItem:
    name: str
    metadata: dict[str, str]
    size: int
    last_modified: datetime | None = None
    #: changes with every write (Last-Modified has whole seconds only)
    etag: str = ""
