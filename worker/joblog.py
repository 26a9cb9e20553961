"""A job's log: its output read back in pieces, redacted on the way, cut to a head and a
tail, spooled to a file for the upload.

Memory stays a few MiB whatever a job prints (a job printing 500 MB once took the agent with
it): each stream is read 1 MiB at a time, decoded incrementally (worker/decoding.py picks the
codec from the first piece), redacted by a ``StreamRedactor`` (a secret straddling two pieces
is still masked whole, because the redactor holds back the end of each piece), and only then
cut: the first ``HEAD_BYTES`` go to the spool as they come, the last ``TAIL_BYTES`` wait in a
ring, and what fell between is counted and marked by one line in the log. Redaction before
the cut means no cut can show part of a secret, and the completion's tails are taken from
the same redacted text.

Each stream keeps at most ``HEAD_BYTES + TAIL_BYTES``, so the log blob stays under
``LOG_MAX_BYTES`` (schemas/base.py), the size the controller refuses to serve beyond.
"""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from rolecall.schemas.base import LOG_MAX_BYTES, tail
from rolecall.schemas.redact import StreamRedactor
from rolecall.worker.decoding import stream_encoding

#: What is read from an output file at once.
_CHUNK = 1024 * 1024
#: Kept from the start and from the end of each stream (two streams fit in LOG_MAX_BYTES
#: with room for the headers and the cut markers).
HEAD_BYTES = (LOG_MAX_BYTES - 64 * 1024) // 4
TAIL_BYTES = HEAD_BYTES
#: Bytes of the redacted end decoded for a completion's tail (a tail keeps fewer chars).
_TAIL_SOURCE_BYTES = 8192


@dataclass(frozen=True)
class StreamLog:
    tail: str  # the last TAIL_CHARS characters, redacted, for the completion
    cut_bytes: int  # redacted bytes left out of the log between its head and its tail


def read_stream(
    f: BinaryIO, secrets: Iterable[str], fallback: str | None, spool: BinaryIO | None
) -> StreamLog:
    """Redact and cut one output file; write its log (head, marker, tail) to ``spool``."""
    f.seek(0)
    first = f.read(_CHUNK)
    decoder = codecs.getincrementaldecoder(stream_encoding(first, fallback))("replace")
    redactor = StreamRedactor(secrets)
    cutter = _Cutter(spool)
    chunk = first
    while chunk:
        cutter.write(redactor.feed(decoder.decode(chunk)).encode())
        chunk = f.read(_CHUNK)
    cutter.write(redactor.feed(decoder.decode(b"", final=True)).encode())
    cutter.write(redactor.close().encode())
    cutter.finish()
    last = cutter.last
    text = last.decode("utf-8", "replace") if cutter.total == len(last) else _from_char(last)
    return StreamLog(tail=tail(text), cut_bytes=cutter.dropped)


class _Cutter:
    """Keeps the head (straight to the spool) and a ring of the tail of redacted UTF-8."""

    def __init__(self, spool: BinaryIO | None) -> None:
        self.spool = spool
        self.head_left = HEAD_BYTES
        self.ring: deque[bytes] = deque()
        self.ring_bytes = 0
        self.dropped = 0
        #: the last bytes of all of it, for the completion's tail, and how many there were
        self.last = b""
        self.total = 0

    def write(self, data: bytes) -> None:
        self.last = (self.last + data[-_TAIL_SOURCE_BYTES:])[-_TAIL_SOURCE_BYTES:]
        self.total += len(data)
        if self.head_left and data:
            n = len(data) if len(data) <= self.head_left else _char_start(data, self.head_left)
            self.head_left = self.head_left - n if n == len(data) else 0
            if self.spool is not None:
                self.spool.write(data[:n])
            data = data[n:]
        if not data:
            return
        self.ring.append(data)
        self.ring_bytes += len(data)
        while self.ring_bytes - len(self.ring[0]) >= TAIL_BYTES:
            old = self.ring.popleft()
            self.ring_bytes -= len(old)
            self.dropped += len(old)

    def finish(self) -> None:
        """Write the marker (if anything was cut) and the tail to the spool."""
        end = b"".join(self.ring)
        self.ring.clear()
        if len(end) > TAIL_BYTES:
            start = _char_start(end, len(end) - TAIL_BYTES, forward=True)
            self.dropped += start
            end = end[start:]
        if self.spool is not None:
            if self.dropped:
                self.spool.write(
                    f"\n[rolecall: {self.dropped:,} bytes cut here: the log keeps the first "
                    f"{HEAD_BYTES:,} and the last {TAIL_BYTES:,} bytes of each stream]\n".encode()
                )
            self.spool.write(end)


def _char_start(data: bytes, at: int, *, forward: bool = False) -> int:
    """The nearest UTF-8 character start at or before (``forward``: at or after) ``at``."""
    if forward:
        while at < len(data) and 0x80 <= data[at] <= 0xBF:
            at += 1
    else:
        while 0 < at < len(data) and 0x80 <= data[at] <= 0xBF:
            at -= 1
    return at


def _from_char(data: bytes) -> str:
    return data[_char_start(data, 0, forward=True) :].decode("utf-8", "replace")
