"""The local content-addressed payload cache.

A payload is fetched once per incarnation per digest and then reused by every job that names
it (a fleet-wide script costs one blob read per instance, not one per job). Bytes are checked
against the job's promised size and SHA-256 *before* they are stored, so nothing unverified
is ever run; the cache directory is private to the agent's user.

A file already in the cache when the agent starts is hashed again on its first use: the
directory is private, but on Windows a file planted before the agent protected it (or by
anyone who can write there) must not run as SYSTEM on the strength of its name. One read per
payload per agent start; after that a hit costs nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from pathlib import Path
from typing import BinaryIO

from rolecall.schemas.errors import NotFound, PayloadMissing, PayloadTampered, PayloadTooLarge
from rolecall.schemas.jobs import PayloadRef
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from rolecall.storage.streams import download_to

log = logging.getLogger(__name__)


class PayloadCache:
    def __init__(self, storage: Storage, root: Path, max_bytes: int) -> None:
        self.storage = storage
        self.root = root
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        #: verified by this agent (at insert, or re-hashed at first use after start)
        self._known: set[Path] = set()
        for leftover in root.glob(".*.part"):  # a download a crash interrupted
            leftover.unlink(missing_ok=True)

    def fetch(self, ref: PayloadRef) -> Path:
        """Return a local path holding exactly the bytes ``ref`` promises."""
        self._check_reference(ref)
        path = self.root / (ref.sha256 + _suffix(ref.filename))
        if path in self._known or self._reverified(path, ref):
            self.hits += 1
            return path
        self.misses += 1
        # streamed to a file beside its final name, hashed on the way, then renamed into
        # place: memory stays one range whatever the payload weighs (storage/streams.py),
        # and nothing unverified is ever at a name a job runs from
        partial = self.root / f".{ref.sha256}.{os.getpid()}.part"
        try:
            with partial.open("w+b") as f:
                size, digest = self._download(ref, f)
            if size != ref.size:
                raise PayloadTampered(
                    f"payload {ref.blob} is {size} bytes; the job promised {ref.size}"
                )
            if digest != ref.sha256:
                raise PayloadTampered(f"payload {ref.blob} hashes to {digest[:16]}…; the job "
                                      f"promised {ref.sha256[:16]}…")  # fmt: skip
            if sys.platform != "win32":
                partial.chmod(0o500)  # read and run; nothing in the cache is edited in place
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        self._known.add(path)
        return path

    def _download(self, ref: PayloadRef, out: BinaryIO) -> tuple[int, str]:
        # a blob larger than promised is refused before it is read (with room for one byte
        # more, so "longer than promised" is told apart from "too large to accept")
        limit = min(self.max_bytes, ref.size + 1)
        try:
            return download_to(self.storage, ref.container, ref.blob, out, limit)
        except NotFound as e:
            raise PayloadMissing(f"payload {ref.blob} is not in {ref.container}") from e
        except PayloadTooLarge as e:
            raise PayloadTampered(f"payload {ref.blob} is larger than the job promised "
                                  f"({ref.size:,} bytes)") from e  # fmt: skip

    def _reverified(self, path: Path, ref: PayloadRef) -> bool:
        """A file left by an earlier agent start: known again only if its bytes still hash
        to the digest it is named after (read in chunks, as downloads are)."""
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                digest = _sha256_of(f) if size == ref.size else ""
        except (FileNotFoundError, IsADirectoryError):
            return False
        except OSError as e:
            log.warning("cannot read cached payload %s: %s", path.name, e)
            return False
        if digest != ref.sha256:
            log.warning("cached payload %s does not match its digest; fetching it again", path.name)
            return False
        self._known.add(path)
        return True

    def _check_reference(self, ref: PayloadRef) -> None:
        if ref.size > self.max_bytes:
            raise PayloadTooLarge(
                f"payload is {ref.size:,} bytes; this agent accepts at most {self.max_bytes:,}"
            )
        names = self.storage.names
        if ref.container != names.payloads_container or ref.blob != Names.payload_blob(ref.sha256):
            raise PayloadTampered(
                f"payload reference {ref.container}/{ref.blob} is outside the payload store "
                f"({names.payloads_container}/sha256/<digest>)"
            )


def _sha256_of(f: BinaryIO) -> str:
    f.seek(0)
    h = hashlib.sha256()
    while chunk := f.read(1024 * 1024):
        h.update(chunk)
    return h.hexdigest()


def _suffix(filename: str) -> str:
    """Keep the extension: Windows interpreters insist on .ps1 and .cmd."""
    suffix = Path(filename.replace("\\", "/")).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
