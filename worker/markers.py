"""Job markers: which jobs this incarnation has applied, and the completion each produced.

A re-delivered message (the queue delivers at least once) is re-reported from its marker
instead of re-run. Markers live in one append-only journal, one JSON line per job, rather than
a file per job: a file per job cost a create and a rename for every job (0.55 ms on ext4,
more than running a trivial job), an appended line costs one ``write``. The index of what is
in the journal (a short hash of the job id and the line's offset) is kept in memory; the
completion itself is read back only on a replay, which is rare.

A SIGKILL between a job's effect and its marker re-runs the job, as before. A power cut can
leave a torn last line: it is skipped on load, which costs at most a re-run of that one job.
At start, markers older than ``MARKER_TTL_S`` are dropped and the journal rewritten, so it
stays bounded on a busy instance. Agents before this journal wrote ``jobs/<hash>.json``; an
instance upgraded in place keeps those, folded into the journal at its next start.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

#: how long a job marker is kept (so markers do not grow without bound on a busy instance)
MARKER_TTL_S = 30 * 24 * 3600
JOURNAL = "jobs.journal"
LEGACY_DIR = "jobs"


def _key(job_id: str) -> str:
    return hashlib.sha256(job_id.encode()).hexdigest()[:40]


class JobMarkers:
    def __init__(self, root: Path, ttl_s: float = MARKER_TTL_S) -> None:
        self.path = root / JOURNAL
        self.legacy = root / LEGACY_DIR
        self.ttl_s = ttl_s
        self._offsets: dict[str, int] = {}
        self._fd: int | None = None

    def open(self) -> JobMarkers:
        kept = self._load()
        imported = self._legacy_markers()
        if kept is not None or imported:
            self._rewrite([*(kept or []), *imported])
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._index()
        return self

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The completion this incarnation recorded for ``job_id``, if it applied it."""
        offset = self._offsets.get(_key(job_id))
        if offset is None:
            return None
        with self.path.open("rb") as f:
            f.seek(offset)
            entry = _parse(f.readline())
        return entry["c"] if entry is not None else None

    def mark(self, job_id: str, completion: dict[str, Any]) -> None:
        assert self._fd is not None, "markers are not open"
        key = _key(job_id)
        line = json.dumps({"k": key, "t": int(time.time()), "c": completion}) + "\n"
        offset = os.lseek(self._fd, 0, os.SEEK_END)
        os.write(self._fd, line.encode())
        self._offsets[key] = offset

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- loading and compaction ------------------------------------------------------------

    def _load(self) -> list[bytes] | None:
        """The lines to keep if the journal needs rewriting (expired or torn lines), else
        None."""
        try:
            lines = self.path.read_bytes().splitlines(keepends=True)
        except FileNotFoundError:
            return None
        cutoff = time.time() - self.ttl_s
        kept = [ln for ln in lines if (e := _parse(ln)) is not None and e["t"] >= cutoff]
        return kept if len(kept) != len(lines) else None

    def _legacy_markers(self) -> list[bytes]:
        if not self.legacy.is_dir():
            return []
        lines = []
        cutoff = time.time() - self.ttl_s
        for entry in os.scandir(self.legacy):
            if entry.name.endswith(".json") and entry.stat().st_mtime >= cutoff:
                try:
                    completion = json.loads(Path(entry.path).read_bytes())
                except ValueError:
                    continue
                body = {"k": entry.name[: -len(".json")], "t": int(entry.stat().st_mtime),
                        "c": completion}  # fmt: skip
                lines.append((json.dumps(body) + "\n").encode())
        return lines

    def _rewrite(self, lines: list[bytes]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(b"".join(lines))
        os.replace(tmp, self.path)
        if self.legacy.is_dir():
            for entry in os.scandir(self.legacy):
                os.unlink(entry.path)
            self.legacy.rmdir()

    def _index(self) -> None:
        offset = 0
        with self.path.open("rb") as f:
            for line in f:
                entry = _parse(line)
                if entry is not None:
                    self._offsets[entry["k"]] = offset
                offset += len(line)


def _parse(line: bytes) -> dict[str, Any] | None:
    """One journal entry, or None for a torn or foreign line."""
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("k"), str):
        return None
    if not isinstance(entry.get("t"), int) or not isinstance(entry.get("c"), dict):
        return None
    return entry
