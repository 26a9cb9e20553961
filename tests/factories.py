"""Builders for contract objects used across tests."""

from __future__ import annotations

import hashlib

from rolecall import __version__
from rolecall.schemas import (
    Baseline,
    Completion,
    EventBatch,
    Execution,
    Hello,
    InstanceRecord,
    JobEnvelope,
    Outcome,
    PayloadRef,
    PoisonRecord,
    RunMode,
    RunRecord,
    Step,
    Target,
    TargetResult,
    utcnow,
)
from rolecall.schemas.codec import encode_document
from rolecall.schemas.jobs import EnvVar
from rolecall.schemas.names import Names
from rolecall.schemas.version import CONTRACT
from rolecall.storage.clients import Storage


def payload(data: bytes = b"echo hi\n", filename: str = "job.sh") -> PayloadRef:
    digest = hashlib.sha256(data).hexdigest()
    return PayloadRef(
        container="rc-payloads",
        blob=f"sha256/{digest}",
        sha256=digest,
        size=len(data),
        filename=filename,
    )


def job(**kw: object) -> JobEnvelope:
    base: dict[str, object] = {
        "job_id": "r1.any",
        "run_id": "r1",
        "role": "web",
        "target": Target(),
        "payload": payload(),
        "execution": Execution(args=["a"], env=[EnvVar(name="X", value="1")]),
        "created_at": utcnow(),
    }
    base.update(kw)
    return JobEnvelope.model_validate(base)


def completion(**kw: object) -> Completion:
    base: dict[str, object] = {
        "job_id": "r1.any",
        "run_id": "r1",
        "role": "web",
        "instance": "web-0",
        "incarnation": "inc1",
        "outcome": Outcome.SUCCEEDED,
        "exit_code": 0,
        "attempt": 1,
        "finished_at": utcnow(),
    }
    base.update(kw)
    return Completion.model_validate(base)


def hello() -> Hello:
    return Hello(
        role="web",
        instance="web-0",
        incarnation="inc1",
        new_incarnation=True,
        agent_version="0.1.0",
        boot_time=utcnow(),
    )


def baseline(version: int = 1) -> Baseline:
    return Baseline(
        role="web",
        version=version,
        steps=[Step(name="one", payload=payload())],
        updated_at=utcnow(),
    )


def every_model() -> list[object]:
    now = utcnow()
    return [
        job(),
        job(action="reconcile", payload=None),
        EventBatch(sender="web-0", events=[hello(), completion()]),
        baseline(),
        InstanceRecord(
            role="web",
            instance="web-0",
            incarnation="inc1",
            agent_version="0.1.0",
            boot_time=now,
            last_seen=now,
        ),
        RunRecord(
            run_id="r1",
            role="web",
            mode=RunMode.EACH,
            created_at=now,
            updated_at=now,
            template=job(),
            targets={"web-0": TargetResult(target="web-0")},
        ),
        PoisonRecord(
            source_queue="rc-role-web",
            reason="malformed",
            error="x",
            original="??",
            poisoned_at=now,
        ),
    ]


def register(
    storage: Storage,
    instance: str,
    *,
    role: str = "web",
    contract: str | None = str(CONTRACT),
    agent: str = __version__,
) -> None:
    """An instance record as its agent writes it (metadata included); ``contract=None``: as an
    agent from before the rules wrote it."""
    now = utcnow()
    record = InstanceRecord(
        role=role, instance=instance, incarnation="inc", agent_version=agent,
        boot_time=now, last_seen=now, contract=contract,
    )  # fmt: skip
    metadata = record.to_metadata()
    if contract is None:  # what an agent before the rules wrote
        metadata = {k: v for k, v in metadata.items() if k not in ("agent", "contract")}
    storage.put_blob(
        storage.names.state_container, Names.instance_blob(role, instance),
        encode_document(record), metadata=metadata,
    )  # fmt: skip
