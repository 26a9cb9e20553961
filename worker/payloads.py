"""The local content-addressed payload cache.

A payload is fetched once per incarnation per digest and then reused by every job that names
it (a fleet-wide script costs one blob read per instance, not one per job). Bytes are checked
against the job's promised size and SHA-256 *before* they are stored, so nothing unverified
is ever run; the cache directory is private to the agent's user.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from pathlib import Path

from rolecall.schemas.errors import NotFound, PayloadMissing, PayloadTampered, PayloadTooLarge
from rolecall.schemas.jobs import PayloadRef
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from rolecall.worker.state import atomic_write

log = logging.getLogger(__name__)


class PayloadCache:
    def __init__(self, storage: Storage, root: Path, max_bytes: int) -> None:
        self.storage = storage
        self.root = root
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        # verified at insert; a restart re-verifies by size only (the folder is private)
        self._known = {p for p in root.glob("*") if p.is_file() and not p.name.startswith(".")}

    def fetch(self, ref: PayloadRef) -> Path:
        """Return a local path holding exactly the bytes ``ref`` promises."""
        self._check_reference(ref)
        path = self.root / (ref.sha256 + _suffix(ref.filename))
        if path in self._known:
            self.hits += 1
            return path
        self.misses += 1
        try:
            data = self.storage.get_blob(ref.container, ref.blob).data
        except NotFound as e:
            raise PayloadMissing(f"payload {ref.blob} is not in {ref.container}") from e
        if len(data) != ref.size:
            raise PayloadTampered(
                f"payload {ref.blob} is {len(data)} bytes; the job promised {ref.size}"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != ref.sha256:
            raise PayloadTampered(
                f"payload {ref.blob} hashes to {digest[:16]}…; the job promised {ref.sha256[:16]}…"
            )
        atomic_write(path, data)
        if sys.platform != "win32":
            path.chmod(0o500)  # read and run; nothing in the cache is edited in place
        self._known.add(path)
        return path

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


def _suffix(filename: str) -> str:
    """Keep the extension: Windows interpreters insist on .ps1 and .cmd."""
    suffix = Path(filename.replace("\\", "/")).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
