"""The baseline consumer: the Azure SDK and nothing else, run as one process per worker.

It does the storage work rolecall does per job, and no more: claim up to 32 messages with a
visibility timeout, read the payload blob (once per process, as rolecall's content-addressed
cache does), post the batch's completions as one events message (as rolecall's outbox does),
then delete each message (completions first, so a crash re-delivers rather than loses). Two
modes, so the throughput benchmark can say where rolecall's time goes:

``floor``  nothing is executed: the storage floor of rolecall's protocol.
``exec``   ``floor`` plus running the payload as a child process (``sh job.sh``) per job,
           as rolecall must: the floor plus the cost of a fork/exec.

Exits when a claim comes back empty and writes ``{"jobs": n, "tx": {...}}`` to ``--stats``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--queue", required=True)
    p.add_argument("--events", required=True)
    p.add_argument("--container", required=True)
    p.add_argument("--blob", required=True)
    p.add_argument("--mode", choices=("floor", "exec"), default="floor")
    p.add_argument("--stats", type=Path, required=True)
    a = p.parse_args()

    tx: Counter[str] = Counter()

    def hook(request: Any) -> None:
        tx[request.http_request.method] += 1

    cs = os.environ["AZURE_STORAGE_CONNECTION_STRING"]
    queue = QueueClient.from_connection_string(cs, a.queue, raw_request_hook=hook)
    events = QueueClient.from_connection_string(cs, a.events, raw_request_hook=hook)
    blob = BlobClient.from_connection_string(cs, a.container, a.blob, raw_request_hook=hook)
    workdir = Path(tempfile.mkdtemp(prefix="bare-loop-"))
    script = workdir / "job.sh"
    payload: bytes | None = None
    jobs = 0
    while True:
        pages = queue.receive_messages(
            messages_per_page=32, max_messages=32, visibility_timeout=60
        ).by_page()
        msgs = list(next(pages, []))
        if not msgs:
            break
        if payload is None:
            payload = blob.download_blob().readall()
            script.write_bytes(payload)
        if a.mode == "exec":
            for _ in msgs:
                subprocess.run(["sh", str(script)], check=True, stdin=subprocess.DEVNULL)
        events.send_message(json.dumps({"done": [m.id for m in msgs]}))
        for m in msgs:
            queue.delete_message(m.id, m.pop_receipt)
        jobs += len(msgs)
    a.stats.write_text(json.dumps({"jobs": jobs, "tx": dict(tx)}))


if __name__ == "__main__":
    main()
