"""Counting storage transactions, exactly, as Azure bills them, and the errors among them.

Every HTTP request the SDK sends passes through a ``raw_request_hook``; we classify it by
service and operation. Because the SDK's own retries are turned off (tenacity retries at our
level), each counted request is one billed transaction, retries included. Every failed
attempt is counted by kind too (storage/retry.py ``error_kind``), as the retry layer sees it:
``network`` failures never reached Azure, so they are errors but not transactions.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


def classify(service: str, method: str, url: str) -> str:
    """Name the operation of one request, e.g. ``queue.receive`` or ``blob.put``."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    segments = [s for s in parts.path.split("/") if s]
    if service == "queue":
        if "messages" in segments:
            last_is_id = segments[-1] != "messages"
            if method == "GET":
                return "queue.peek" if query.get("peekonly") else "queue.receive"
            if method == "POST":
                return "queue.send"
            if method == "DELETE":
                return "queue.delete" if last_is_id else "queue.clear"
            if method == "PUT":
                return "queue.update"
        if query.get("comp") == ["list"]:
            return "queue.list_queues"
        if query.get("comp") == ["metadata"]:
            return "queue.properties"
        return {"PUT": "queue.create", "DELETE": "queue.delete_queue"}.get(method, "queue.other")
    if query.get("comp") == ["list"]:
        return "blob.list"
    if query.get("comp") == ["batch"]:
        return "blob.batch"
    if query.get("restype") == ["container"]:
        return {"PUT": "container.create", "DELETE": "container.delete"}.get(
            method, "container.properties"
        )
    return {
        "GET": "blob.get",
        "PUT": "blob.put",
        "HEAD": "blob.properties",
        "DELETE": "blob.delete",
    }.get(method, "blob.other")


#: every name :func:`classify` gives: what a worker reports is counted under these or "other"
OPERATIONS = frozenset({
    "queue.peek", "queue.receive", "queue.send", "queue.delete", "queue.clear", "queue.update",
    "queue.list_queues", "queue.properties", "queue.create", "queue.delete_queue",
    "queue.other", "blob.list", "blob.batch", "container.create", "container.delete",
    "container.properties", "blob.get", "blob.put", "blob.properties", "blob.delete",
    "blob.other",
})  # fmt: skip


class Meter:
    """Thread-safe counts of storage transactions by operation, and of errors by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    def hook(self, service: str) -> Any:
        def on_request(request: Any) -> None:
            http = request.http_request
            self.add(classify(service, http.method, http.url))

        return on_request

    def add(self, op: str, n: int = 1) -> None:
        with self._lock:
            self._counts[op] += n

    def error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def errors(self) -> dict[str, int]:
        with self._lock:
            return dict(self._errors)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._errors.clear()

    def dump(self, path: Path) -> None:
        """Write counts atomically (benchmarks read them from rolecall.worker processes)."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.snapshot(), sort_keys=True))
        tmp.replace(path)
