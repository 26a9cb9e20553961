"""Starting a run: one job for any instance of a role, or one per instance, rate-controlled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rolecall.controller.baselines import current_baseline
from rolecall.controller.dispatch import Dispatcher, dispatched, parse_limit, plan, recorded
from rolecall.controller.fleet import InstanceSummary, list_instances
from rolecall.controller.payloads import publish_file
from rolecall.controller.results import dispatch_view
from rolecall.controller.sealing import seal_secrets
from rolecall.controller.skew import TooOld, refusal, too_old
from rolecall.controller.store import RunStore, new_run_id

if TYPE_CHECKING:
    from rolecall.controller.published import PublishedPayloads
    from rolecall.controller.signing import Signer
from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ConfigError, NotFound, UnknownInstance, UnknownRole
from rolecall.schemas.jobs import (
    DEFAULT_DEADLINE_S,
    EnvVar,
    Execution,
    Interpreter,
    JobEnvelope,
    PayloadRef,
    Target,
)
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, RunRecord
from rolecall.schemas.sealing import Sealed
from rolecall.schemas.version import PRE_RULES, Version
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
    #: send ``secret_env`` as plain secret env vars, not sealed to the role's key
    clear_secrets: bool = False
    interpreter: Interpreter = Interpreter.AUTO
    entrypoint: str | None = None
    issuer: str = "rolecall"
    description: str = ""
    #: targets whose agents cannot read the job: stop the run, or skip them (controller/skew.py)
    too_old: TooOld | str = TooOld.STOP
    #: ``--instance`` names no instance has registered under are sent anyway (an instance
    #: still to be created); otherwise they are refused as the typos they usually are
    allow_unregistered: bool = False

    def __post_init__(self) -> None:
        self.too_old = TooOld(self.too_old)


def has_baseline(storage: Storage, role: str) -> bool:
    baseline, _ = current_baseline(storage, role)
    return baseline is not None


def _unknown_role(storage: Storage, role: str) -> UnknownRole:
    return UnknownRole(
        f"role {role!r} has no registered instance and no baseline in namespace "
        f"{storage.names.namespace}; check the name with `rolecall instances`"
    )


def _targets(storage: Storage, req: RunRequest) -> tuple[list[str], list[InstanceSummary]]:
    """Who the run is for, and what the fleet listing said of them. For ``--any`` that costs
    no request: the role is known to exist when its queue does, which the send finds out
    (see ``_send_first_wave``)."""
    if req.mode is RunMode.ANY:
        if req.instances:
            raise ConfigError("--any sends one job to the role queue; --instance needs --each")
        return ["any"], []
    registered = list_instances(storage, req.role)
    if req.instances:
        # hand-named instances of a role with none registered yet: the role must at least
        # have a baseline, or the name is probably a typo
        if not registered and not has_baseline(storage, req.role):
            raise _unknown_role(storage, req.role)
        names = sorted(set(req.instances))
        known = {s.instance for s in registered}
        unknown = [n for n in names if n not in known]
        if unknown and not req.allow_unregistered:
            raise _unregistered(req.role, unknown, sorted(known))
        return names, [s for s in registered if s.instance in names]
    now = utcnow()
    live = [s for s in registered if s.live(now)]
    if not live:
        if not registered and not has_baseline(storage, req.role):
            raise _unknown_role(storage, req.role)
        raise UnknownRole(f"role {req.role!r} has no live instances to run on")
    return [s.instance for s in live], live


def _unregistered(role: str, unknown: list[str], known: list[str]) -> UnknownInstance:
    shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
    return UnknownInstance(
        f"no instance {', '.join(map(repr, unknown))} has registered in role {role!r}"
        + (f" (registered: {shown})" if known else "")
        + "; check the name with `rolecall instances`, or pass --allow-unregistered to queue "
        "the job for an instance that has not started yet"
    )


def _skipped(
    storage: Storage, req: RunRequest, listed: list[InstanceSummary], required: Version
) -> dict[str, str]:
    """Targets to leave out because their agents cannot read the job (or stop the run).
    Every agent reads 1.0, so a job that needs no more costs no check at all."""
    if required <= PRE_RULES:
        return {}
    if req.mode is RunMode.ANY:
        now = utcnow()
        listed = [s for s in list_instances(storage, req.role) if s.live(now)]
    old = too_old(listed, required)
    if old and (req.too_old is TooOld.STOP or req.mode is RunMode.ANY):
        raise refusal(old, required, any_instance=req.mode is RunMode.ANY)
    return old


def start_run(
    storage: Storage,
    req: RunRequest,
    *,
    signer: Signer | None = None,
    published: PublishedPayloads | None = None,
) -> RunRecord:
    """Create a run and send its first wave. ``run --any`` of a script ``published`` knows
    costs two storage transactions: the send and the run record."""
    targets, listed = _targets(storage, req)
    try:
        max_concurrency = parse_limit(req.max_concurrency, len(targets))
        max_errors = parse_limit(req.max_errors, len(targets))
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if max_concurrency == 0:
        raise ConfigError("--max-concurrency must allow at least one target")
    payload: PayloadRef = publish_file(storage, req.script, published)
    now = utcnow()
    run_id = new_run_id(now)
    sealed = seal_secrets(storage, req.role, run_id, req.secret_env, clear=req.clear_secrets)
    template = _template(req, run_id, payload, now, sealed)
    skipped = _skipped(storage, req, listed, template.required_version())
    record = RunRecord(
        run_id=run_id,
        role=req.role,
        mode=req.mode,
        created_at=now,
        updated_at=now,
        issuer=req.issuer,
        description=req.description or req.script.name,
        template=template,
        max_concurrency=max_concurrency,
        max_errors=max_errors,
        layout="split",
        total=len(targets),
        skipped=skipped,
    )
    # registered instances made their own queue; only hand-named ones may lack one
    for t in req.instances:
        storage.ensure_queue(storage.names.instance_queue(t))
    return launch(storage, record, targets, signer)


def launch(
    storage: Storage, record: RunRecord, targets: list[str], signer: Signer | None
) -> RunRecord:
    """Send a new (split) run's first wave, then create its record; ``targets`` in dispatch
    order.

    The first wave goes out before the record exists: nobody else can dispatch a run they
    cannot see, so no lock is needed, and a crash in between leaves messages whose reports
    wait (the fold retries reports of a run it cannot see yet) rather than a record that
    claims a dispatch that never happened."""
    view = record.model_copy(update={"targets": dispatch_view(record, targets)})
    first_wave, _ = plan(view)
    sent = first_wave[: _send_first_wave(storage, Dispatcher(storage, signer), view, first_wave)]
    RunStore(storage).create(recorded(record, view, sent, None), order=targets)
    return dispatched(view, sent)


def _template(
    req: RunRequest, run_id: str, payload: PayloadRef, now: datetime, sealed: Sealed | None
) -> JobEnvelope:
    """The job every target gets (dispatch fills in the job id and the target); its secrets
    sealed to the role's key, or in clear when the operator asked for that."""
    clear = {} if sealed is not None else req.secret_env
    return JobEnvelope(
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
            + [EnvVar(name=k, value=v, secret=True) for k, v in clear.items()],
            sealed_env=sealed,
        ),
        timeout_s=req.timeout_s,
        not_after=now + timedelta(seconds=req.deadline_s or DEFAULT_DEADLINE_S),
        max_attempts=req.max_attempts,
        created_at=now,
        issuer=req.issuer,
    )


def _send_first_wave(
    storage: Storage, dispatcher: Dispatcher, view: RunRecord, keys: list[str]
) -> int:
    """Send; for ``--any``, a missing role queue means no instance has provisioned it: fine if
    the role has a baseline or a registered instance (the job waits for an instance), a typo
    otherwise. Returns how many leading messages went out."""
    try:
        return dispatcher.send(view, keys)
    except NotFound:
        if view.mode is not RunMode.ANY:
            raise
        known = list_instances(storage, view.role) or has_baseline(storage, view.role)
        if not known:
            raise _unknown_role(storage, view.role) from None
        storage.ensure_queue(storage.names.role_queue(view.role))
        return dispatcher.send(view, keys)
