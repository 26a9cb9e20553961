"""Redaction of credentials and secret values from anything a human or a log may see.

Applied to log lines, error messages and output tails. The patterns cover the shapes Azure
credentials take in text: ``AccountKey=...`` in connection strings, ``sig=...`` in SAS tokens
and URLs, and ``SharedAccessSignature=...``; known secret values are replaced literally.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"

_PATTERNS = [
    re.compile(r"(?i)(AccountKey=)[^;\s\"']+"),
    re.compile(r"(?i)(SharedAccessSignature=)[^;\s\"']+"),
    re.compile(r"(?i)([?&]sig=)[^&\s\"']+"),
    re.compile(r"(?i)(\bsig=)[A-Za-z0-9%+/=]{16,}"),
    re.compile(r"(?i)(Authorization:\s*(?:Bearer|SharedKey)\s+)\S+"),
]


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for value in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(value, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text
