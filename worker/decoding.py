"""Turning a job's output bytes into text: UTF-8 first, then what Windows programs write.

Redirected to a file, Windows programs do not write UTF-8: cmd.exe and PowerShell 5.1 write
the OEM code page (850 in Western Europe, 866 in Russia, 932 in Japan), child Pythons the
ANSI one, and a few .NET and WSL tools UTF-16LE without a byte-order mark. Decoding all of
it as UTF-8 garbles every localized tail. So: a byte-order mark decides; valid UTF-8 is
UTF-8 (ASCII is both); text whose every other byte is NUL is UTF-16LE; anything else is the
fallback code page (the OEM one on Windows; none elsewhere, where output stays UTF-8 with
replacement characters, as before).

A tail starts anywhere in the file, so it may begin inside a UTF-8 sequence (the pieces are
skipped) or on the odd byte of a UTF-16 unit (the reader starts tails at even offsets); a
killed job may end inside a sequence (an incomplete end is not a reason to leave UTF-8).
"""

from __future__ import annotations

import codecs

#: share of NUL bytes among the odd-indexed ones that marks BOM-less UTF-16LE
_UTF16_NUL_SHARE = 0.4


def decode_output(data: bytes, fallback: str | None = None, *, partial_start: bool = False) -> str:
    """Text of ``data``; ``partial_start`` when it was cut from the middle of a stream.
    Runs twice per job: UTF-8 without NULs (the usual case) costs one C-level decode."""
    if not data:
        return ""
    if data.startswith(codecs.BOM_UTF8):
        return data[3:].decode("utf-8", "replace")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", "replace")
    if b"\x00" in data and _looks_utf16le(data):  # before UTF-8: UTF-16LE ASCII is UTF-8 too
        return data[: len(data) - len(data) % 2].decode("utf-16-le", "replace")
    text = _strict_utf8(_skip_continuation_bytes(data) if partial_start else data)
    if text is not None:
        return text
    if fallback is not None:
        return data.decode(fallback, "replace")
    return data.decode("utf-8", "replace")


def stream_encoding(head: bytes, fallback: str | None = None) -> str:
    """The codec for a whole stream read in pieces, chosen from its first piece by the rules
    of ``decode_output`` (a stream that turns invalid later keeps its codec, with U+FFFD)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head and _looks_utf16le(head):
        return "utf-16-le"
    if fallback is not None and _strict_utf8(head) is None:
        return fallback
    return "utf-8"


def _strict_utf8(data: bytes) -> str | None:
    """UTF-8 if every complete sequence is valid (an incomplete last one becomes U+FFFD)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason != "unexpected end of data" or e.start < len(data) - 3:
            return None
        cut = e.start
    try:
        return data[:cut].decode("utf-8") + "\ufffd"
    except UnicodeDecodeError:
        return None


def _skip_continuation_bytes(data: bytes) -> bytes:
    n = 0
    while n < min(3, len(data)) and 0x80 <= data[n] <= 0xBF:
        n += 1
    return data[n:]


def _looks_utf16le(data: bytes) -> bool:
    odd = data[1::2]
    return len(odd) >= 2 and odd.count(0) >= _UTF16_NUL_SHARE * len(odd)


def windows_fallback_encoding() -> str | None:
    """The OEM code page's codec name on Windows (what cmd and PowerShell 5.1 write when
    redirected); None elsewhere. Asked once per agent."""
    import sys

    if sys.platform != "win32":
        return None
    import ctypes

    codepage = ctypes.windll.kernel32.GetOEMCP()
    name = f"cp{codepage}"
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    return name
