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
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from rolecall.worker.joblog import StreamLog, read_stream


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

    def read(
        self, secrets: Iterable[str], *, spool: BinaryIO | None = None
    ) -> tuple[StreamLog, StreamLog]:
        """Both streams redacted and cut (worker/joblog.py); their log written to ``spool``."""
        out, err = self._require()
        if spool is not None:
            spool.write(b"--- stdout ---\n")
        out_log = read_stream(out, secrets, self.fallback, spool)
        if spool is not None:
            spool.write(b"\n--- stderr ---\n")
        return out_log, read_stream(err, secrets, self.fallback, spool)

    def spool(self) -> BinaryIO:
        """A new anonymous file for a log on its way to its blob."""
        return tempfile.TemporaryFile(dir=self.root)  # type: ignore[return-value]

    def _require(self) -> tuple[BinaryIO, BinaryIO]:
        assert self._files is not None, "no job output is open"
        return self._files


def _end(f: BinaryIO) -> int:
    return os.fstat(f.fileno()).st_size
