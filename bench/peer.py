"""Driving the Celery peer: a producer in this process, ``celery worker`` processes as children.

Shared by the throughput benchmark and the SIGKILL comparison so both run Celery the same way:
prefork pool of W processes, the transport's defaults (1 s polling, one message per receive)
and Celery's default prefetch (4 per pool process).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.celery_app import broker_url
from bench.core import Sandbox

CELERY = str(Path(sys.executable).with_name("celery"))
REPO = Path(__file__).resolve().parent.parent


class CeleryPeer:
    """One isolated Celery deployment (its own queue prefix and ledger) on a sandbox."""

    def __init__(self, box: Sandbox, name: str, *, acks_late: bool = False) -> None:
        self.box = box
        self.prefix = f"c{uuid.uuid4().hex[:8]}-"
        self.ledger = box.root / f"{name}-{self.prefix}ledger.txt"
        self.ledger.touch()
        self.acks_late = acks_late
        self.url = broker_url(box.az.queue_url)
        self.name = name
        self._producer: Any = None

    @property
    def env(self) -> dict[str, str]:
        return self.box.env(
            "unused",
            BENCH_BROKER_URL=self.url,
            BENCH_QUEUE_PREFIX=self.prefix,
            BENCH_LEDGER=str(self.ledger),
            BENCH_ACKS_LATE="1" if self.acks_late else "0",
        )

    @property
    def queue(self) -> str:
        """The Azure queue Celery's default queue maps to."""
        return f"{self.prefix}celery"

    def producer(self) -> Any:
        if self._producer is None:
            from celery import Celery

            app = Celery(f"producer-{self.prefix}", broker=self.url)
            app.conf.update(
                broker_transport_options={"queue_name_prefix": self.prefix},
                broker_connection_retry_on_startup=True,
                task_ignore_result=True,
            )
            self._producer = app
        return self._producer

    def send(self, task: str, args_list: list[list[Any]], threads: int = 8) -> None:
        """Enqueue one task per argument list; a connection per thread (kombu connections
        are not shared across threads)."""
        app = self.producer()
        chunks = [args_list[i::threads] for i in range(threads)]

        def send_chunk(chunk: list[list[Any]]) -> None:
            with app.connection_for_write() as conn:
                for args in chunk:
                    app.send_task(task, args=args, connection=conn)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(send_chunk, [c for c in chunks if c]))

    def start_worker(self, concurrency: int, tag: str = "w") -> subprocess.Popen[bytes]:
        cmd = [
            CELERY, "-A", "bench.celery_app", "worker",
            "--pool", "prefork", "--concurrency", str(concurrency),
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--loglevel", "warning", "--hostname", f"{tag}-{self.prefix}@bench",
        ]  # fmt: skip
        log = self.box.root / "logs" / f"celery-{self.name}-{self.prefix}{tag}.log"
        return self.box.procs.start(cmd, env=self.env, log=log, cwd=REPO)

    def lines(self, tag: str) -> list[str]:
        return [
            ln.split()[1]
            for ln in self.ledger.read_text().splitlines()
            if ln.startswith(tag + " ") and len(ln.split()) == 2
        ]

    def count(self, tag: str = "done") -> int:
        return len(self.lines(tag))
