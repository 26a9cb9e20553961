"""The results plane against a real Azurite, attacked as a compromised instance would with its
own SAS bundle: a report speaks only for its sender, and only about what the run sent."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient

from rolecall.controller.fold import EventFolder
from rolecall.controller.runs import RunRequest, start_run
from rolecall.controller.sas import issue_worker_sas
from rolecall.controller.store import RunStore
from rolecall.schemas import Completion, Outcome, utcnow
from rolecall.schemas.access import SasBundle
from rolecall.schemas.codec import report_parts
from rolecall.schemas.names import Names
from rolecall.schemas.records import PoisonRecord
from rolecall.schemas.runs import RunMode, RunRecord, TargetState
from rolecall.storage.clients import Storage
from rolecall.worker.outbox import BatchSigner
from tests.factories import register

ROLES = {"web": ["web-0"], "db": ["db-0", "db-1", "db-2"]}


class Instance:
    """What a (possibly compromised) instance holds: its bundle, and nothing else."""

    def __init__(self, bundle: SasBundle) -> None:
        self.bundle = bundle
        assert bundle.instance_key is not None
        self.signer = BatchSigner(bundle.instance_key.get_secret_value())

    def post(self, container: str, data: dict[str, Any], *, sign: bool = True) -> None:
        """Create a report blob with this instance's own token for ``container``."""
        body, metadata = report_parts(self.signer.sign(data) if sign else data)
        self.raw(container, body, metadata)

    def raw(self, container: str, body: bytes, metadata: dict[str, str] | None = None) -> None:
        token = self.bundle.containers.get(container)
        if token is None:
            raise PermissionError(f"no token for {container}")
        BlobClient(self.bundle.blob_endpoint, container, f"r-{uuid.uuid4().hex}.json",
                   credential=AzureSasCredential(token.get_secret_value()),
                   retry_total=0).upload_blob(body, metadata=metadata)  # fmt: skip


@pytest.fixture
def fleet(storage: Storage) -> dict[str, Instance]:
    out = {}
    for role, instances in ROLES.items():
        for name in instances:
            register(storage, name, role=role)
            out[name] = Instance(issue_worker_sas(storage, role, name, hours=1))
    return out


def each_run(storage: Storage, tmp_path: Path, role: str, **kw: Any) -> RunRecord:
    script = tmp_path / "job.sh"
    script.write_text("echo ok\n")
    return start_run(storage, RunRequest(role=role, script=script, mode=RunMode.EACH, **kw))


def report(run: RunRecord, instance: str, role: str, **kw: Any) -> dict[str, Any]:
    c = Completion(
        job_id=Names.job_id(run.run_id, instance), run_id=run.run_id, role=role,
        instance=instance, incarnation="i1", outcome=Outcome.SUCCEEDED, exit_code=0,
        attempt=1, finished_at=utcnow(),
    )  # fmt: skip
    data = json.loads(c.model_dump_json(exclude_none=True))
    return {**data, **kw}


def batch(sender: str, *events: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": 1, "kind": "events", "sender": sender, "events": list(events)}


def set_aside(storage: Storage, role: str) -> list[PoisonRecord]:
    from rolecall.schemas.codec import decode_message

    out = []
    for q in [storage.names.results_container(role), storage.names.events_queue]:
        try:
            out += [decode_message(m.content, PoisonRecord)
                    for m in storage.peek(storage.names.poison_queue(q), 32)]  # fmt: skip
        except Exception:
            continue
    return out


def test_web_credentials_cannot_change_db_results_through_any_channel(
    storage: Storage, tmp_path: Path, fleet: dict[str, Instance]
) -> None:
    run = each_run(storage, tmp_path, "db")
    web = fleet["web-0"]
    names = storage.names
    forged = batch("db-0", report(run, "db-0", "db"))
    with pytest.raises(PermissionError):
        web.post(names.results_container("db"), forged)  # no token for db's channel
    web_token = web.bundle.containers[names.results_container("web")].get_secret_value()
    with pytest.raises(HttpResponseError):  # web's token does not open db's channel
        BlobClient(
            web.bundle.blob_endpoint,
            names.results_container("db"),
            "x.json",
            credential=AzureSasCredential(web_token),
            retry_total=0,
        ).upload_blob(b"x")
    with pytest.raises((PermissionError, HttpResponseError)):  # nor the legacy queue
        QueueClient(
            web.bundle.queue_endpoint,
            names.events_queue,
            credential=AzureSasCredential(web_token),
            retry_total=0,
        ).send_message("x")
    own = names.results_container("web")
    web.post(own, forged)  # its own channel: refused (signature is web-0's, sender says db-0)
    web.post(own, batch("web-0", report(run, "db-0", "db")))  # speaks for db-0
    web.post(own, batch("web-0", report(run, "web-0", "db")))  # a db report from web
    EventFolder(storage).fold_all()
    view = RunStore(storage).get(run.run_id)
    assert {t.state for t in view.targets.values()} == {TargetState.QUEUED}, "nothing changed"
    reasons = sorted(p.reason for p in set_aside(storage, "web"))
    assert reasons == ["foreign_instance", "wrong_role", "wrong_role"]


def test_forged_reports_are_refused_each_with_its_reason(
    storage: Storage, tmp_path: Path, fleet: dict[str, Instance]
) -> None:
    run = each_run(storage, tmp_path, "db", instances=["db-0", "db-1"])
    names = storage.names
    db0, db2 = fleet["db-0"], fleet["db-2"]
    mine = names.results_container("db")
    cases: dict[str, tuple[Instance, str, dict[str, Any]]] = {
        "foreign_instance": (db0, mine, batch("db-0", report(run, "db-1", "db"))),
        "not_dispatched": (db2, names.results_container("db"),
                           batch("db-2", report(run, "db-2", "db"))),
        "impossible_attempt": (db0, mine, batch("db-0", report(run, "db-0", "db", attempt=99))),
        "wrong_log": (db0, mine, batch("db-0", report(
            run, "db-0", "db", outcome="failed",
            log_blob=f"{names.state_container}/{Names.run_blob(run.run_id)}"))),
        # db-0 posing as db-1, whose key is enrolled: the whole message is refused
        "bad_report_signature": (db0, mine, batch("db-1", report(run, "db-1", "db"))),
    }  # fmt: skip
    for who, queue, data in cases.values():
        who.post(queue, data)
    EventFolder(storage).fold_all()
    view = RunStore(storage).get(run.run_id)
    assert view.targets["db-0"].state is TargetState.QUEUED
    assert view.targets["db-1"].state is TargetState.QUEUED
    assert "db-2" not in view.targets
    assert sorted(p.reason for p in set_aside(storage, "db")) == sorted(cases)


HOSTILE = {
    "run_id": "../baselines/web",
    "job_id": "a/../../b",
    "instance": "../../state/x",
    "role": "../db",
    "log_blob": "rc-state/../../runs/x.json",
}


@pytest.mark.parametrize("field", sorted(HOSTILE))
def test_a_hostile_name_in_any_field_is_set_aside_and_writes_nothing(
    storage: Storage, tmp_path: Path, fleet: dict[str, Instance], field: str
) -> None:
    run = each_run(storage, tmp_path, "db", instances=["db-0"])
    good = report(run, "db-0", "db")
    bad = {**good, field: HOSTILE[field]}
    before = {b.name for b in storage.list_blobs(storage.names.state_container, "")}
    fleet["db-0"].post(storage.names.results_container("db"), batch("db-0", bad))
    stats = EventFolder(storage).fold_all()
    assert stats.completions == 0 and stats.poisoned + stats.set_aside == 1
    after = {b.name for b in storage.list_blobs(storage.names.state_container, "")}
    assert after - before <= {n for n in after if n.startswith(f"runs/{run.run_id}/")}
    assert RunStore(storage).get(run.run_id).targets["db-0"].state is TargetState.QUEUED


def test_one_bad_report_does_not_hold_back_the_good_ones_around_it(
    storage: Storage, tmp_path: Path, fleet: dict[str, Instance]
) -> None:
    run = each_run(storage, tmp_path, "db")
    names = storage.names
    db0 = fleet["db-0"]
    q = names.results_container("db")
    db0.post(q, batch("db-0", report(run, "db-0", "db", attempt=50),
                      report(run, "db-0", "db")))  # fmt: skip
    db0.raw(q, b"not even base64 %%%")
    fleet["db-1"].post(names.results_container("db"),
                       batch("db-1", report(run, "db-1", "db")))  # fmt: skip
    stats = EventFolder(storage).fold_once()  # one round
    assert stats.completions == 2
    view = RunStore(storage).get(run.run_id)
    assert view.targets["db-0"].state is TargetState.SUCCEEDED
    assert view.targets["db-1"].state is TargetState.SUCCEEDED


def test_a_canary_run_cannot_be_advanced_by_forged_reports(
    storage: Storage, tmp_path: Path, fleet: dict[str, Instance]
) -> None:
    """--max-concurrency 1 --max-errors 0: only db-0 is sent. Forged successes for db-1 and
    db-2 (from db-0's channel, and from their own before they were sent anything) change
    nothing, and in particular send nothing to them."""
    run = each_run(storage, tmp_path, "db", max_concurrency="1", max_errors="0")
    names = storage.names
    assert [k for k, t in run.targets.items() if t.state is TargetState.QUEUED] == ["db-0"]
    fleet["db-0"].post(
        names.results_container("db"),
        batch("db-0", report(run, "db-1", "db"), report(run, "db-2", "db")),
    )
    for i in ("db-1", "db-2"):
        fleet[i].post(names.results_container("db"), batch(i, report(run, i, "db")))
    EventFolder(storage).fold_all()
    view = RunStore(storage).get(run.run_id)
    assert [view.targets[i].state for i in ("db-1", "db-2")] == [TargetState.PENDING] * 2
    assert storage.peek(names.instance_queue("db-1"), 1) == []
    assert storage.peek(names.instance_queue("db-2"), 1) == []


def test_the_controller_service_survives_a_stream_of_hostile_reports(
    storage: Storage, tmp_path: Path, env: dict[str, str], fleet: dict[str, Instance]
) -> None:
    """Garbage, brackets nested 20,000 deep, hostile names, forgeries and a 300 kB blob, then
    one honest report: `rolecall controller` folds the honest one and is still running."""
    import signal
    import subprocess

    from tests.fleet import ROLECALL, wait_for

    run = each_run(storage, tmp_path, "db", instances=["db-0"])
    q = storage.names.results_container("db")
    hostile = [
        b"%%% not even JSON",
        b"[" * 20_000 + b"]" * 20_000,
        json.dumps(batch("db-0", {**report(run, "db-0", "db"),
                                  "run_id": "../baselines/db"})).encode(),
        json.dumps(batch("db-0", report(run, "db-0", "db", attempt=7))).encode(),
        b"x" * 300_000,  # bigger than any report: never read
    ]  # fmt: skip
    for body in hostile * 2:
        storage.put_blob(q, f"hostile-{uuid.uuid4().hex}", body)
    service = subprocess.Popen(
        [ROLECALL, "controller", "--poll-max", "0.5", "--log-format", "json"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        fleet["db-0"].post(q, batch("db-0", report(run, "db-0", "db")))
        wait_for(lambda: RunStore(storage).get(run.run_id).targets["db-0"].state.ok,
                 timeout=60, what="the honest report to be folded")  # fmt: skip
        assert service.poll() is None, "the service is still running"
        wait_for(lambda: storage.list_blobs(q, "") == [], timeout=60,
                 what="every report folded or set aside, and deleted")  # fmt: skip
    finally:
        service.send_signal(signal.SIGTERM)
        _, err = service.communicate(timeout=60)
    assert service.returncode == 0, err[-2000:]
    assert "Traceback" not in err
