"""JSON documents in blob storage, changed only by ETag-guarded read-modify-write.

Several writers may change one document at once: controllers folding events into a run
record or an instance history, operators publishing a baseline. Each change is a function of
the version just read, written only if nobody wrote in between (If-Match on its ETag, or
create-only when there was none); on a conflict it is applied again to the fresh version.
Nothing is lost and nothing is counted twice, provided the change is idempotent.

A writer that keeps losing gives up loudly, with ConcurrencyConflict, never by dropping its
change: whoever asked for it (an event still on its queue, an operator's command) can ask
again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel

from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.errors import ConcurrencyConflict, NotFound
from rolecall.storage.clients import Storage

M = TypeVar("M", bound=BaseModel)

#: a handful of writers racing on one document settle in a few rounds; this many lost races
#: in a row means something keeps rewriting it
DEFAULT_ATTEMPTS = 20


def read_document(
    storage: Storage, container: str, path: str, model: type[M]
) -> tuple[M, str] | None:
    """The document and its ETag, or None if there is none."""
    try:
        blob = storage.get_blob(container, path)
    except NotFound:
        return None
    return decode_document(blob.data, model), blob.etag


def update_document(
    storage: Storage,
    container: str,
    path: str,
    model: type[M],
    change: Callable[[M | None], M],
    *,
    before_write: Callable[[M | None, M], None] | None = None,
    stamp: Callable[[M], M] | None = None,
    metadata: Callable[[M], dict[str, str]] | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    gave_up: str | None = None,
) -> M:
    """Apply ``change`` until its result is written over the very version it was computed
    from; return what was written, or the stored document if the change left it as it was.

    ``change`` gets the stored document, or None if there is none yet; it may raise to refuse.
    ``before_write(old, new)`` runs after ``change`` and before each conditional write, for
    effects that must happen before the document says they did (dispatch sends its messages
    there). ``stamp`` finishes a changed document just before it is written (a write time),
    so it never makes an unchanged one look changed. ``metadata`` gives the blob's metadata.

    Raises ConcurrencyConflict, with ``gave_up`` as its message, once ``attempts`` writes in a
    row have lost their race.
    """
    for _ in range(attempts):
        found = read_document(storage, container, path, model)
        current, etag = found if found is not None else (None, None)
        new = change(current)
        if new == current:
            return new
        if before_write is not None:
            before_write(current, new)
        if stamp is not None:
            new = stamp(new)
        try:
            storage.put_blob(
                container,
                path,
                encode_document(new),
                etag=etag,
                create_only=etag is None,
                metadata=None if metadata is None else metadata(new),
            )
        except ConcurrencyConflict:
            continue
        return new
    raise ConcurrencyConflict(gave_up or f"{container}/{path} changed {attempts} times under us")
