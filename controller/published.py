"""Payloads this operator's machine knows are in the account, so a repeat ``rolecall run``
of the same script costs no existence check.

A payload blob is named by its SHA-256 and never changes; nothing in rolecall deletes one. So
"it was there" stays true, and the cheapest check is none: an empty file per (account,
container, digest) under the user's cache directory, written after a publish succeeded. With
it a ``run --any`` of a known script is two storage transactions (send the job, write the run
record) instead of three or more. Entries expire after a week, a safety net for a payloads
container someone emptied by hand (the worker would poison those jobs as ``payload_missing``,
and the next publish after expiry uploads again). The cache is an optimisation only: if its
directory cannot be written, every publish checks, as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from pathlib import Path

TTL_S = 7 * 24 * 3600


def default_cache_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "rolecall" / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rolecall"


class PublishedPayloads:
    def __init__(self, root: Path | None, account: str, ttl_s: float = TTL_S) -> None:
        self.root = None if root is None else root / "published"
        self.account = account
        self.ttl_s = ttl_s
        self._seen: set[str] = set()  # this process: no file system at all

    def _entry(self, container: str, digest: str) -> str:
        return hashlib.sha256(f"{self.account}|{container}|{digest}".encode()).hexdigest()[:32]

    def known(self, container: str, digest: str) -> bool:
        entry = self._entry(container, digest)
        if entry in self._seen:
            return True
        if self.root is None:
            return False
        try:
            fresh = time.time() - (self.root / entry).stat().st_mtime < self.ttl_s
        except OSError:
            return False
        if fresh:
            self._seen.add(entry)
        return fresh

    def add(self, container: str, digest: str) -> None:
        entry = self._entry(container, digest)
        self._seen.add(entry)
        if self.root is not None:
            with contextlib.suppress(OSError):
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                (self.root / entry).touch()
