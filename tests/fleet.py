"""Test helpers: real worker processes, an operator's view of storage, ground truth.

Workers are real ``rolecall worker`` subprocesses with their own state directories (their
"disks"). Job scripts append to a ledger file outside every state directory: that is the
ground truth of what ran where, which no crash or reimage can erase.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from rolecall.controller.payloads import publish_bytes
from rolecall.controller.signing import Signer
from rolecall.devtools.localfleet import LocalInstance, rolecall_command
from rolecall.devtools.reports import read_reports
from rolecall.devtools.waiting import wait_for
from rolecall.schemas import (
    Completion,
    Hello,
    JobEnvelope,
    PayloadKind,
    PayloadRef,
    PoisonRecord,
    Target,
    decode_message,
    encode_message,
    utcnow,
)
from rolecall.schemas.jobs import EnvVar, Execution
from rolecall.storage.clients import Storage

T = TypeVar("T")
ROLECALL = rolecall_command()[0]


# --- workers ---------------------------------------------------------------------------

#: Short leases and polls keep the tests quick; the defaults are for real fleets.
TEST_ARGS = ["--lease", "4", "--poll-max", "0.3", "--heartbeat", "30", "--grace", "2"]


class Worker(LocalInstance):
    def log(self) -> str:
        return self.logs()

    def reimage(self, *, restart: bool = False) -> None:
        super().reimage(restart=restart)


class Fleet:
    """Starts workers for a test and makes sure none outlives it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.workers: list[Worker] = []

    def worker(self, role: str, instance: str, *args: str, start: bool = True) -> Worker:
        w = Worker(role, instance, self.root, self.env, [*TEST_ARGS, *args])
        self.workers.append(w)
        return w.start() if start else w  # type: ignore[return-value]

    def stop(self) -> None:
        for w in self.workers:
            w.kill()


@contextmanager
def fleet(root: Path, env: dict[str, str]) -> Iterator[Fleet]:
    f = Fleet(root, env)
    try:
        yield f
    finally:
        f.stop()


# --- the operator's side ------------------------------------------------------------------


class Ledger:
    """Ground truth: one line per job effect, written by the job scripts themselves."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[list[str]]:
        return [ln.split() for ln in self.path.read_text().splitlines() if ln.strip()]

    def entries(self, tag: str) -> list[list[str]]:
        return [ln for ln in self.lines() if ln and ln[0] == tag]

    def script(self, tag: str, body: str = "") -> bytes:
        """A shell script that records ``tag instance incarnation attempt`` then runs ``body``."""
        return (
            "#!/bin/sh\nset -e\n"
            f'echo "{tag} $ROLECALL_INSTANCE $ROLECALL_INCARNATION $ROLECALL_ATTEMPT" >> "{self.path}"\n'
            f"{body}\n"
        ).encode()


class Operator:
    """Enqueues jobs and reads what workers report, straight from rolecall.storage."""

    def __init__(self, storage: Storage, signer: Signer | None = None) -> None:
        self.storage = storage
        #: the operator's key: ``enqueue`` and ``signed`` sign with it, as the CLI does
        self.signer = signer
        self.names = storage.names
        self.events: list[Any] = []
        storage.ensure_containers()
        storage.ensure_queue(self.names.events_queue)

    def publish(
        self, data: bytes, filename: str = "job.sh", kind: PayloadKind = PayloadKind.SCRIPT
    ) -> PayloadRef:
        return publish_bytes(self.storage, data, filename, kind)

    def job(
        self,
        role: str,
        payload: PayloadRef | None,
        *,
        instance: str | None = None,
        run_id: str = "run1",
        job_id: str | None = None,
        **kw: Any,
    ) -> JobEnvelope:
        """A job as a controller would send it now (``sent_at`` stamped: send it at once)."""
        target = Target(instance=instance)
        return JobEnvelope(
            job_id=job_id or f"{run_id}.{target.key}",
            run_id=run_id,
            role=role,
            target=target,
            payload=payload,
            created_at=utcnow(),
            **{"sent_at": utcnow(), **kw},
        )

    def signed(self, job: JobEnvelope) -> str:
        """``job`` encoded as the controller sends it: signed (``ops.job`` stamped it)."""
        return encode_message(self.signer.sign_job(job) if self.signer is not None else job)

    def enqueue(self, job: JobEnvelope) -> None:
        queue = (
            self.names.role_queue(job.role)
            if job.target.instance is None
            else self.names.instance_queue(job.target.instance)
        )
        self.storage.ensure_queue(queue)
        self.storage.send(queue, self.signed(job))

    def send_raw(self, queue: str, text: str) -> None:
        self.storage.ensure_queue(queue)
        self.storage.send(queue, text)

    def drain_events(self) -> list[Any]:
        """Every report instances posted so far (taken away: nothing here folds them)."""
        self.events += [e for b in read_reports(self.storage) for e in b.events]
        return self.events

    def completions(self, job_id: str | None = None, **match: Any) -> list[Completion]:
        self.drain_events()
        out = [e for e in self.events if isinstance(e, Completion)]
        if job_id is not None:
            out = [c for c in out if c.job_id == job_id]
        return [c for c in out if all(getattr(c, k) == v for k, v in match.items())]

    def hellos(self, instance: str) -> list[Hello]:
        self.drain_events()
        return [e for e in self.events if isinstance(e, Hello) and e.instance == instance]

    def poison(self, queue: str) -> list[PoisonRecord]:
        try:
            msgs = self.storage.peek(self.names.poison_queue(queue), 32)
        except Exception:
            return []
        return [decode_message(m.content, PoisonRecord) for m in msgs]

    def visible(self, queue: str) -> int:
        return len(self.storage.peek(queue, 32))


def env_vars(**kv: str) -> Execution:
    return Execution(env=[EnvVar(name=k, value=v) for k, v in kv.items()])


def in_the_past(seconds: float = 60) -> Any:
    return utcnow() - timedelta(seconds=seconds)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "Fleet",
    "Ledger",
    "Operator",
    "Worker",
    "env_vars",
    "fleet",
    "in_the_past",
    "os",
    "sha",
    "wait_for",
]


def write_baseline(root: Path, steps: list[tuple[str, bytes]], **step_fields: Any) -> Path:
    """A baseline YAML file with one script per step, as an operator would write it."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    spec = []
    for i, (name, body) in enumerate(steps):
        (root / f"step{i}.sh").write_bytes(body)
        spec.append({"name": name, "script": f"step{i}.sh", **step_fields})
    path = root / "baseline.yaml"
    path.write_text(yaml.safe_dump({"steps": spec}))
    return path


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``rolecall ARGS`` as an operator would."""
    return subprocess.run(
        [ROLECALL, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def cli_json(env: dict[str, str], *args: str) -> Any:
    import json

    r = cli(env, *args, "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)
