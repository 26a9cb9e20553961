"""Structured JSON log lines, with every secret redacted before it is written.

Each line carries the instance's role, name and incarnation, plus job and run ids where the
call site passes them (``extra={"job_id": ...}``), so a fleet's logs can be joined with run
records. Redaction covers connection strings, SAS signatures, account keys and the values of
job environment variables marked secret.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import datetime, timezone

from rolecall.schemas.redact import redact

_FIELDS = ("job_id", "run_id", "queue", "message_id", "attempt", "step", "outcome")


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


class JsonFormatter(logging.Formatter):
    def __init__(self, context: dict[str, str]) -> None:
        super().__init__()
        self.context = context

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self.context,
        }
        for key in _FIELDS:
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str), SECRETS.snapshot())


def configure(level: str, context: dict[str, str]) -> JsonFormatter:
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter(context)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("azure", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return formatter
