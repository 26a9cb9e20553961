"""Publishing payloads: content-addressed by SHA-256, uploaded once.

The blob name is the digest, so publishing the same script twice costs one existence check,
and a job can never be pointed at bytes other than those it was signed for.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from rolecall.schemas.errors import ConcurrencyConflict, ConfigError
from rolecall.schemas.jobs import PayloadKind, PayloadRef
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage

if TYPE_CHECKING:
    from rolecall.controller.published import PublishedPayloads

#: Above this size a payload is checked for (one HEAD) before it is uploaded; below it the
#: create-only upload is the check, one request either way and no bytes wasted to speak of.
_CHECK_FIRST_BYTES = 1024 * 1024


def payload_kind(path: Path) -> PayloadKind:
    name = path.name.lower()
    archive_name = name.endswith((".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz"))
    if archive_name and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path)):
        return PayloadKind.ARCHIVE
    return PayloadKind.SCRIPT


def publish_bytes(
    storage: Storage,
    data: bytes,
    filename: str,
    kind: PayloadKind,
    published: PublishedPayloads | None = None,
) -> PayloadRef:
    """Upload ``data`` unless it is there already; ``published`` remembers what is, so a
    repeat publish of the same bytes costs no request at all."""
    digest = hashlib.sha256(data).hexdigest()
    ref = PayloadRef(
        container=storage.names.payloads_container,
        blob=Names.payload_blob(digest),
        sha256=digest,
        size=len(data),
        kind=kind,
        filename=Path(filename).name,
    )
    if published is not None and published.known(ref.container, digest):
        return ref
    if len(data) <= _CHECK_FIRST_BYTES or storage.blob_size(ref.container, ref.blob) != len(data):
        # ConcurrencyConflict: the bytes are there already (published earlier, or a moment ago)
        with contextlib.suppress(ConcurrencyConflict):
            storage.put_blob(
                ref.container,
                ref.blob,
                data,
                create_only=True,
                content_type="application/octet-stream",
            )
    if published is not None:
        published.add(ref.container, digest)
    return ref


def publish_file(
    storage: Storage, path: Path, published: PublishedPayloads | None = None
) -> PayloadRef:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    return publish_bytes(storage, data, path.name, payload_kind(path), published)
