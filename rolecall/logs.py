"""One log format for the worker and the controller service, with every secret redacted.

Both run unattended (systemd, a Windows service, a container) where logs are read by
machines, so there a record is one JSON object per line: ``ts``, ``level``, ``logger``,
``msg``, the process context (the worker's ``role``, ``instance`` and ``incarnation``), and
``job_id``, ``run_id`` and the other fields a call site passes (``extra={"job_id": ...}``), so a
fleet's logs can be joined with run records. At a terminal the same record is one readable
line of text. ``auto`` picks by whether stderr is a terminal.

Redaction is the last step of both formats, so a secret in a message, an argument or a
traceback never reaches the stream: connection strings, SAS signatures and account keys
(``schemas/redact.py``), and the values jobs register in ``SECRETS`` while they run (their
environment variables marked secret). JSON values are redacted before encoding, since
encoding escapes a quote or a non-ASCII character in a secret and the literal would no
longer match.

Worker and controller never import each other, so this module lives beside them.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TextIO

from rolecall.schemas.redact import redact

FIELDS = ("job_id", "run_id", "queue", "message_id", "attempt", "step", "outcome")
#: The Azure SDK logs every HTTP request at INFO; their warnings still come through.
QUIET = ("azure", "urllib3")


class _Secrets:
    """Secret values to scrub; jobs add theirs while they run."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()

    def add(self, *values: str) -> None:
        with self._lock:
            self._values.update(v for v in values if v)

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self._values)


SECRETS = _Secrets()


class _Formatter(logging.Formatter):
    """What both formats share: the process context and the record's known fields."""

    kind = ""

    def __init__(self, context: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.context = dict(context or {})

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        found = {k: _plain(getattr(record, k)) for k in FIELDS if hasattr(record, k)}
        return {**self.context, **found}


def _plain(value: object) -> object:
    """A field as JSON has always written it: numbers as numbers, a str-valued enum (an
    ``Outcome``) as its value, anything else as its str."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str.__str__(value) if isinstance(value, str) else str(value)


class JsonFormatter(_Formatter):
    kind = "json"

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.fields(record),
        }
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        secrets = SECRETS.snapshot()
        return json.dumps(
            {k: redact(v, secrets) if isinstance(v, str) else v for k, v in line.items()}
        )


class TextFormatter(_Formatter):
    """``2026-11-27 10:15:00 INFO    rolecall.worker: job done  job_id=… outcome=succeeded``"""

    kind = "text"

    def format(self, record: logging.LogRecord) -> str:
        when = self.formatTime(record, "%Y-%m-%d %H:%M:%S")
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = " ".join(f"{k}={v}" for k, v in self.fields(record).items())
        if fields:
            line += f"  {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line, SECRETS.snapshot())


_FORMATTERS: dict[str, type[_Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def configure(
    level: str = "info",
    context: Mapping[str, str] | None = None,
    fmt: str | None = None,
    stream: TextIO | None = None,
) -> logging.Formatter:
    """Send every record at ``level`` or above to ``stream`` (stderr), one line each.

    ``fmt`` is ``json``, ``text`` or ``auto`` (text on a terminal, else JSON). ``None`` keeps
    the format an earlier call chose: the command line picks it before the worker knows its
    identity, and the worker calls again to add that identity as ``context``.
    """
    stream = stream or sys.stderr
    fmt = fmt or _configured() or "auto"
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    if fmt not in _FORMATTERS:
        raise ValueError(f"log format must be auto, json or text, not {fmt!r}")
    formatter = _FORMATTERS[fmt](context)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in QUIET:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return formatter


def _configured() -> str | None:
    """The format of the handler ``configure`` installed, if it is still in place."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, _Formatter):
            return handler.formatter.kind
    return None
