"""Big blobs to and from files, so memory holds one block whatever the blob weighs.

Downloads come in ranges of ``BLOCK_BYTES``, read in order, hashed and written on the way:
the SDK's own download reads its first 32 MiB (``max_single_get_size``) into memory at once,
and in parallel ranges the bytes cannot be hashed as they come. The first range's answer
gives the blob's size, so a blob larger than its reader accepts is refused before the rest
is read.

``upload_blob`` with a stream reads up to ``max_single_put_size`` (64 MiB by default) into
memory for a single Put Blob. A file over one block is instead staged block by block (Put
Block) and committed (Put Block List); ``create_only`` puts If-None-Match: * on the commit,
which is where a blob comes into being, so a blob someone created first is never replaced.
Staged blocks that are never committed are discarded by the service after a week.

A SAS with only the create right (``c``) allows all three calls for a new blob.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from typing import TYPE_CHECKING, Any, BinaryIO

from rolecall.schemas.errors import PayloadTooLarge

if TYPE_CHECKING:
    from rolecall.storage.clients import Storage

#: One block, the most a single Put Blob sends, and one download range: 4 MiB, the SDK's own
#: block and chunk size.
BLOCK_BYTES = 4 * 1024 * 1024

_TOTAL = re.compile(r"/(\d+)$")


def download_to(
    storage: Storage, container: str, path: str, out: BinaryIO, max_bytes: int
) -> tuple[int, str]:
    """Stream a blob into ``out`` from its start; (its size, its SHA-256). Raises
    PayloadTooLarge, before reading more than one range, for a blob over ``max_bytes``."""
    client = storage.blob(container, path)
    what = f"read {container}/{path}"
    out.seek(0)
    out.truncate()
    digest, offset, total = hashlib.sha256(), 0, None
    while total is None or offset < total:
        stream = storage._call(what, client.download_blob, offset=offset, length=BLOCK_BYTES)
        if total is None:
            total = _total_size(stream.properties.content_range, int(stream.size or 0))
            if total > max_bytes:
                raise PayloadTooLarge(f"{container}/{path} is {total:,} bytes; at most "
                                      f"{max_bytes:,} accepted")  # fmt: skip
        data = storage._call(what, stream.readall)
        if not data:
            break  # the blob shrank under us: the size check after the download tells
        digest.update(data)
        out.write(data)
        offset += len(data)
    return offset, digest.hexdigest()


def _total_size(content_range: str | None, fallback: int) -> int:
    """The blob's size from "bytes 0-4194303/123456789" (an empty blob has no range)."""
    m = _TOTAL.search(content_range or "")
    return int(m.group(1)) if m else fallback


def upload_file(
    storage: Storage,
    container: str,
    path: str,
    f: BinaryIO,
    *,
    create_only: bool = False,
    content_type: str = "application/octet-stream",
) -> None:
    """Write ``f`` (from its start) to the blob; raises ConcurrencyConflict if
    ``create_only`` and the blob exists."""
    from azure.core import MatchConditions
    from azure.storage.blob import BlobBlock, ContentSettings

    client = storage.blob(container, path)
    settings = ContentSettings(content_type=content_type)
    condition: dict[str, Any] = (
        {"etag": "*", "match_condition": MatchConditions.IfMissing} if create_only else {}
    )
    size = os.fstat(f.fileno()).st_size
    f.seek(0)
    what = f"write {container}/{path}"
    if size <= BLOCK_BYTES:
        data = f.read()
        storage._call(what, lambda: client.upload_blob(data, overwrite=not create_only,
                                              content_settings=settings))  # fmt: skip
        return
    blocks: list[BlobBlock] = []
    while chunk := f.read(BLOCK_BYTES):
        block_id = base64.b64encode(f"{len(blocks):08d}".encode()).decode()
        storage._call(what, lambda: client.stage_block(block_id, chunk))  # noqa: B023 - called at once
        blocks.append(BlobBlock(block_id=block_id))
    commit = client.commit_block_list
    storage._call(what, lambda: commit(blocks, content_settings=settings, **condition))
