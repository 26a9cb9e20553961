"""A mixed fleet against a real Azurite: agents of this release run messages of the next minor
and refuse, with a reason, what needs a newer agent; the controller folds reports of agents
from before the rules; `instances` shows who runs what; `run` asks before sending a job some
targets cannot read."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from rolecall.controller.fold import EventFolder
from rolecall.controller.runs import RunRequest, start_run
from rolecall.controller.skew import AgentsTooOld
from rolecall.controller.store import RunStore
from rolecall.schemas import JobEnvelope, Outcome, utcnow
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, TargetState
from rolecall.schemas.version import CONTRACT, Version
from rolecall.storage.clients import Storage
from tests.factories import register
from tests.fleet import Fleet, Ledger, Operator, cli_json, wait_for

NEXT = Version(CONTRACT.major, CONTRACT.minor + 1)


def b64(data: dict[str, object]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def test_an_agent_runs_the_next_minor_and_refuses_what_needs_a_newer_agent(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """A later controller adds optional fields (version unchanged: nothing it sets is
    critical): the job runs. A job that needs the next minor is refused with its reason,
    reported, and dead-lettered for a requeue once the agent is upgraded."""
    workers.worker("web", "web-0")
    payload = ops.publish(ledger.script("future"))
    later = json.loads(ops.job("web", payload, job_id="later").model_dump_json())
    later["x_display_name"] = "nightly rotate"
    later["execution"]["x_priority"] = 3
    assert ops.signer is not None  # a later controller signs what it sends, unknown fields too
    later["signature"] = ops.signer.signature(later).model_dump(mode="json")
    ops.storage.send(ops.names.role_queue("web"), b64(later), create=True)
    needs = json.loads(ops.job("web", payload, job_id="needs-next").model_dump_json())
    needs["schema_version"] = str(NEXT)
    ops.storage.send(ops.names.role_queue("web"), b64(needs))

    done = wait_for(lambda: ops.completions("later"), what="the next-minor job")
    assert done[0].outcome is Outcome.SUCCEEDED and len(ledger.entries("future")) == 1
    refused = wait_for(lambda: ops.completions("needs-next"), what="the refusal")
    assert refused[0].outcome is Outcome.REJECTED
    assert refused[0].reason and f"needs contract {NEXT}" in refused[0].reason
    (poisoned,) = wait_for(lambda: ops.poison(ops.names.role_queue("web")), what="poison")
    assert poisoned.reason == "requires_newer_agent"


def any_run(storage: Storage, run_id: str) -> None:
    """A run the controller dispatched (the fold believes reports only for those)."""
    storage.put_blob(
        storage.names.state_container, Names.run_blob(run_id),
        json.dumps({"schema_version": 1, "kind": "run", "run_id": run_id, "role": "web",
                    "mode": "any", "created_at": utcnow().isoformat(),
                    "updated_at": utcnow().isoformat(),
                    "targets": {"any": {"target": "any", "state": "queued",
                                        "dispatched_at": utcnow().isoformat()}}}).encode(),
    )  # fmt: skip


def test_the_controller_folds_reports_of_agents_from_before_the_rules(storage: Storage) -> None:
    """An agent baked before the rules writes schema_version 1, no contract, no new fields,
    to the one events queue; its runs are records from before 0.2 too."""
    any_run(storage, "r-old")
    any_run(storage, "r-new")
    now = utcnow().isoformat()
    old_completion = {
        "schema_version": 1, "kind": "completion", "job_id": "r-old.any", "run_id": "r-old",
        "role": "web", "instance": "web-7", "incarnation": "inc-2025", "outcome": "succeeded",
        "exit_code": 0, "attempt": 1, "finished_at": now,
    }  # fmt: skip
    old_hello = {
        "schema_version": 1, "kind": "hello", "role": "web", "instance": "web-7",
        "incarnation": "inc-2025", "new_incarnation": True, "agent_version": "0.1.0",
        "boot_time": now, "platform": "Windows-2019",
    }  # fmt: skip
    newer = {**old_completion, "job_id": "r-new.any", "run_id": "r-new",
             "schema_version": str(CONTRACT), "x_signed_report": {"alg": "future"}}  # fmt: skip
    batch = {"schema_version": 1, "kind": "events", "sender": "web-7",
             "events": [old_hello, old_completion, newer]}  # fmt: skip
    storage.send(storage.names.events_queue, b64(batch), create=True)
    stats = EventFolder(storage).fold_all()
    assert (stats.completions, stats.hellos, stats.poisoned) == (2, 1, 0)
    for run_id in ("r-old", "r-new"):
        run = RunStore(storage).get(run_id)
        assert run.targets["any"].state is TargetState.SUCCEEDED


def test_instances_shows_each_agent_and_the_contract_it_speaks(
    storage: Storage, env: dict[str, str]
) -> None:
    register(storage, "web-old", contract=None, agent="0.1.0")
    register(storage, "web-new", contract=str(CONTRACT), agent="0.2.0")
    rows = {r["instance"]: r for r in cli_json(env, "instances", "--role", "web")}
    assert (rows["web-old"]["contract"], rows["web-old"]["agent_version"]) == ("1.0", None)
    assert (rows["web-new"]["contract"], rows["web-new"]["agent_version"]) == (
        str(CONTRACT), "0.2.0",
    )  # fmt: skip


@pytest.fixture
def needs_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs as a later controller would build them once a critical field is set."""
    monkeypatch.setattr(JobEnvelope, "required_version", lambda self: NEXT)


def test_run_stops_before_sending_a_job_some_targets_cannot_read(
    storage: Storage, tmp_path: Path, needs_next: None
) -> None:
    register(storage, "web-0", contract=str(NEXT), agent="0.3.0")
    register(storage, "web-1", contract=str(CONTRACT), agent="0.2.0")
    register(storage, "web-2", contract=None, agent="0.1.0")
    script = tmp_path / "fix.sh"
    script.write_text("echo fixed\n")
    for mode in (RunMode.EACH, RunMode.ANY):
        with pytest.raises(AgentsTooOld, match=r"2 instance\(s\) run agents that cannot read"):
            start_run(storage, RunRequest(role="web", script=script, mode=mode))
    assert storage.list_blobs(storage.names.state_container, "runs/") == [], "nothing sent"

    run = start_run(
        storage, RunRequest(role="web", script=script, mode=RunMode.EACH, too_old="skip")
    )
    assert run.targets["web-0"].state is TargetState.QUEUED
    for old in ("web-1", "web-2"):
        assert run.targets[old].state is TargetState.NOT_DISPATCHED
        assert (run.targets[old].reason or "").startswith("agent_too_old")
