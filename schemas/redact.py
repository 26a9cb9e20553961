"""Redaction of credentials and secret values from anything a human or a log may see.

Applied to log lines, error messages and a job's output (on the stream, before any cut: see
``StreamRedactor``). The patterns cover the shapes Azure credentials take in text:
``AccountKey=...`` in connection strings, ``sig=...`` in SAS tokens and URLs, and
``SharedAccessSignature=...``; known secret values are masked literally, at any length (jobs
refuse secrets shorter than ``MIN_SECRET_CHARS``, whose mask would only blank ordinary text).

Masking works on spans of the original text, not by successive replacement: two secrets that
overlap are masked as their union, and a stream can tell where a match may still be
incomplete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

#: Secrets shorter than this are refused by ``rolecall run`` and ``baseline set``: a mask for
#: "abc" would blank every "abc" a job prints and still not hide a value so easily guessed.
MIN_SECRET_CHARS = 8


def short_secret(name: str) -> str:
    """The one line that refuses a secret shorter than ``MIN_SECRET_CHARS``."""
    return (f"secret {name} is shorter than {MIN_SECRET_CHARS} characters; a secret that short "
            f"cannot be masked without blanking ordinary output")  # fmt: skip


#: (a word every match contains, casefolded; the pattern): scanning for the word first
#: keeps a job's output cheap to redact (a regex scan costs ~10 ms a MiB, a find ~0.2)
_PATTERNS = [
    ("accountkey=", re.compile(r"(?i)(AccountKey=)[^;\s\"']+")),
    ("sharedaccesssignature=", re.compile(r"(?i)(SharedAccessSignature=)[^;\s\"']+")),
    ("sig=", re.compile(r"(?i)([?&]sig=)[^&\s\"']+")),
    ("sig=", re.compile(r"(?i)(\bsig=)[A-Za-z0-9%+/=]{16,}")),
    ("authorization", re.compile(r"(?i)(Authorization:\s*(?:Bearer|SharedKey)\s+)\S+")),
]

#: Characters a stream holds back at least, so a pattern's prefix and value (an account key
#: is 88 characters, a SAS signature under 100) are seen whole before anything is emitted.
_HOLD_CHARS = 4096
#: Past this, a credential-shaped value still open at a chunk's end is emitted masked up to
#: the cut rather than held without bound (only a value over 64 Ki characters reaches it).
_MAX_HOLD_CHARS = _HOLD_CHARS + 65536

#: (where a match starts, where its masked part starts, where it ends)
_Match = tuple[int, int, int]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    values = _usable(secrets)
    return _mask(text, _matches(text, values), len(text))


class StreamRedactor:
    """Redacts text arriving in pieces, as a job's output is read: a secret or credential
    straddling two pieces is masked whole. It holds back the end of what it was fed (at
    least the longest secret, and any match that may not be complete yet) until more text
    or ``close()`` shows what it is."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = _usable(secrets)
        self.hold = max([_HOLD_CHARS, *(len(s) for s in self.secrets)])
        self._carry = ""

    def feed(self, text: str) -> str:
        """What of the text so far can be emitted now, redacted."""
        t = self._carry + text
        cut = len(t) - self.hold
        if cut <= 0:
            self._carry = t
            return ""
        found = _matches(t, self.secrets)
        floor = len(t) - max(self.hold, _MAX_HOLD_CHARS)
        moved = True
        while moved:  # a match straddling the cut waits whole for the next piece
            moved = False
            for start, _, end in found:
                if start < cut < end and start >= max(floor, 0):
                    cut, moved = start, True
        self._carry = t[cut:]
        return _mask(t, found, cut)

    def close(self) -> str:
        t, self._carry = self._carry, ""
        return _mask(t, _matches(t, self.secrets), len(t))


def _usable(secrets: Iterable[str]) -> list[str]:
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def _matches(text: str, secrets: list[str]) -> list[_Match]:
    found: list[_Match] = []
    for value in secrets:
        at = text.find(value)
        while at >= 0:
            found.append((at, at, at + len(value)))
            at = text.find(value, at + 1)
    folded = text.casefold()
    for word, pattern in _PATTERNS:
        if word not in folded:
            continue
        found.extend((m.start(), m.end(1), m.end()) for m in pattern.finditer(text))
    found.sort()
    return found


def _mask(text: str, found: list[_Match], upto: int) -> str:
    """``text[:upto]`` with the masked part of every match replaced (overlaps merged)."""
    pieces: list[str] = []
    shown = 0  # text[:shown] is decided
    for _, masked, stop in sorted(found, key=lambda m: m[1]):
        start, end = max(masked, shown), min(stop, upto)
        if start >= upto:
            break
        if end <= start:
            continue
        if start > shown or not pieces or pieces[-1] != MASK:
            pieces.append(text[shown:start])
            pieces.append(MASK)
        shown = end
    pieces.append(text[shown:upto])
    return "".join(pieces)
