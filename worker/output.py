"""Where a job's stdout and stderr go: two anonymous temporary files, reused from job to job
while nothing else holds them.

Files, not pipes: a chatty script can neither fill a pipe and deadlock nor fill the agent's
memory. Anonymous (``O_TMPFILE`` on Linux, delete-on-close on Windows): a crash leaves nothing
behind to sweep. Reused: creating and deleting two files costs more filesystem work than a
trivial job itself (measured: 0.37 ms a job on ext4), so after a job the same two files are
truncated for the next one. That is safe only if no process of the finished job still holds
them (``nohup cmd &`` in a script keeps the descriptors and would write into the next job's
log), so the executor reports whether the job's process group is empty and a job that left
something running gets fresh files for the one after it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from rolecall.schemas.base import tail
from rolecall.worker.decoding import decode_output

#: Bytes read from the end of each stream for a completion's tail (a tail keeps fewer chars).
_TAIL_BYTES = 8192


class JobOutput:
    def __init__(self, root: Path, fallback_encoding: str | None = None) -> None:
        self.root = root
        #: what output that is not UTF-8 is decoded as (worker/decoding.py)
        self.fallback = fallback_encoding
        self._files: tuple[BinaryIO, BinaryIO] | None = None

    def open(self) -> tuple[BinaryIO, BinaryIO]:
        """Empty stdout and stderr files for the next job."""
        if self._files is None:
            files: tuple[BinaryIO, BinaryIO] = (
                tempfile.TemporaryFile(dir=self.root),  # type: ignore[assignment]  # noqa: SIM115 - kept across jobs
                tempfile.TemporaryFile(dir=self.root),  # noqa: SIM115
            )
            self._files = files
            return files
        for f in self._files:
            f.seek(0)
            f.truncate()
        return self._files

    def finished(self, *, reusable: bool) -> None:
        """The job is over; ``reusable`` False if some process of it may still write."""
        if not reusable:
            self.close()

    def close(self) -> None:
        if self._files is not None:
            for f in self._files:
                with contextlib.suppress(OSError):
                    f.close()
            self._files = None

    @property
    def size(self) -> int:
        return sum(_end(f) for f in self._files or ())

    def tails(self) -> tuple[str, str]:
        out, err = self._require()
        return _tail_of(out, self.fallback), _tail_of(err, self.fallback)

    def full_log(self) -> str:
        """Both streams, for the log blob; read only when it will be uploaded."""
        out, err = (decode_output(_read(f), self.fallback) for f in self._require())
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def _require(self) -> tuple[BinaryIO, BinaryIO]:
        assert self._files is not None, "no job output is open"
        return self._files


def _end(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size


def _read(f: BinaryIO) -> bytes:
    f.seek(0)
    return f.read()


def _tail_of(f: BinaryIO, fallback: str | None) -> str:
    size = _end(f)
    start = max(0, size - _TAIL_BYTES)
    start += start % 2  # even: a UTF-16 stream's units start at even offsets
    f.seek(start)
    return tail(decode_output(f.read(), fallback, partial_start=start > 0))
