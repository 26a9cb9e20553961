"""Starting a run: one job for any instance of a role, or one per instance, rate-controlled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rolecall.controller.baselines import current_baseline
from rolecall.controller.dispatch import Dispatcher, mark_dispatched, parse_limit, plan
from rolecall.controller.fleet import list_instances, live_instances
from rolecall.controller.payloads import publish_file
from rolecall.controller.store import RunStore, new_run_id

if TYPE_CHECKING:
    from rolecall.controller.signing import Signer
from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ConfigError, UnknownRole
from rolecall.schemas.jobs import EnvVar, Execution, Interpreter, JobEnvelope, PayloadRef, Target
from rolecall.schemas.names import Names
from rolecall.schemas.records import RunMode, RunRecord, TargetResult
from rolecall.storage.clients import Storage


@dataclass
class RunRequest:
    role: str
    script: Path
    mode: RunMode
    instances: list[str] = field(default_factory=list)
    timeout_s: float = 600.0
    deadline_s: float | None = None
    max_attempts: int = 3
    max_concurrency: str | None = None
    max_errors: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    interpreter: Interpreter = Interpreter.AUTO
    entrypoint: str | None = None
    issuer: str = "rolecall"
    description: str = ""


def known_role(storage: Storage, role: str) -> bool:
    """A role exists once it has a baseline or an instance has registered with it."""
    if list_instances(storage, role):
        return True
    baseline, _ = current_baseline(storage, role)
    return baseline is not None


def start_run(
    storage: Storage,
    req: RunRequest,
    *,
    signer: Signer | None = None,
) -> RunRecord:
    if not known_role(storage, req.role):
        raise UnknownRole(
            f"role {req.role!r} has no registered instance and no baseline in namespace "
            f"{storage.names.namespace}; check the name with `rolecall instances`"
        )
    if req.mode is RunMode.ANY:
        if req.instances:
            raise ConfigError("--any sends one job to the role queue; --instance needs --each")
        targets = ["any"]
    else:
        targets = sorted(set(req.instances)) or live_instances(storage, req.role)
        if not targets:
            raise UnknownRole(f"role {req.role!r} has no live instances to run on")
    try:
        max_concurrency = parse_limit(req.max_concurrency, len(targets))
        max_errors = parse_limit(req.max_errors, len(targets))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if max_concurrency == 0:
        raise ConfigError("--max-concurrency must allow at least one target")

    payload: PayloadRef = publish_file(storage, req.script)
    now = utcnow()
    run_id = new_run_id(now)
    template = JobEnvelope(
        job_id=Names.job_id(run_id, "template"),
        run_id=run_id,
        role=req.role,
        target=Target(),
        payload=payload,
        execution=Execution(
            interpreter=req.interpreter,
            entrypoint=req.entrypoint,
            args=req.args,
            env=[EnvVar(name=k, value=v) for k, v in req.env.items()]
            + [EnvVar(name=k, value=v, secret=True) for k, v in req.secret_env.items()],
        ),
        timeout_s=req.timeout_s,
        not_after=now + timedelta(seconds=req.deadline_s) if req.deadline_s else None,
        max_attempts=req.max_attempts,
        created_at=now,
        issuer=req.issuer,
    )
    record = RunRecord(
        run_id=run_id,
        role=req.role,
        mode=req.mode,
        created_at=now,
        updated_at=now,
        issuer=req.issuer,
        description=req.description or req.script.name,
        template=template,
        targets={t: TargetResult(target=t) for t in targets},
        max_concurrency=max_concurrency,
        max_errors=max_errors,
    )
    if req.mode is RunMode.ANY:
        storage.ensure_queue(storage.names.role_queue(req.role))
    else:
        # registered instances made their own queue; only hand-named ones may lack one
        for t in req.instances:
            storage.ensure_queue(storage.names.instance_queue(t))
    # The first wave goes out before the record exists: nobody else can dispatch a run they
    # cannot see, so no lock is needed, and a crash in between leaves messages whose
    # completions create the record (nothing lost) rather than a record with nothing sent.
    record, first_wave = plan(record)
    record = mark_dispatched(record, first_wave)
    Dispatcher(storage, signer).send(record, first_wave)
    return RunStore(storage).create(record)
