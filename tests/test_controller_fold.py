"""Folding against real storage: redelivered events change nothing; cancel; logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolecall.controller import fold
from rolecall.controller.fold import EventFolder
from rolecall.controller.store import RunStore
from rolecall.schemas import (
    EventBatch,
    RunMode,
    RunRecord,
    TargetResult,
    TargetState,
    encode_message,
    utcnow,
)
from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.errors import ConcurrencyConflict
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceHistory
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import BlobData, Storage
from tests.factories import completion, hello
from tests.fleet import Fleet, Ledger, Operator, cli, cli_json, wait_for


def make_run(storage: Storage, targets: list[str]) -> RunRecord:
    now = utcnow()
    return RunStore(storage).create(
        RunRecord(
            run_id="r1",
            role="web",
            mode=RunMode.EACH,
            created_at=now,
            updated_at=now,
            # dispatched: the fold believes only reports about targets a run dispatched
            targets={
                t: TargetResult(target=t, state=TargetState.QUEUED, dispatched_at=now)
                for t in targets
            },
        )
    )


def test_an_event_folded_twice_changes_nothing(storage: Storage) -> None:
    storage.ensure_queue(storage.names.events_queue)
    make_run(storage, ["web-0", "web-1"])
    batch = EventBatch(
        sender="web-0", events=[hello(), completion(instance="web-0", job_id="r1.web-0")]
    )
    text = encode_message(batch)
    folder = EventFolder(storage)
    storage.send(storage.names.events_queue, text)
    first = folder.fold_all()
    assert (first.completions, first.hellos) == (1, 1)
    blob = storage.get_blob(storage.names.state_container, Names.run_blob("r1"))
    history = storage.get_blob(storage.names.state_container, Names.history_blob("web", "web-0"))

    storage.send(storage.names.events_queue, text)  # the same message, redelivered
    folder.fold_all()
    again = storage.get_blob(storage.names.state_container, Names.run_blob("r1"))
    assert again.etag == blob.etag, "not even rewritten"
    assert (
        storage.get_blob(storage.names.state_container, Names.history_blob("web", "web-0")).etag
        == history.etag
    )
    run = RunStore(storage).get("r1")
    assert run.targets["web-0"].attempts == 1 and run.count("ok") == 1


class RivalController(Storage):
    """Real storage, beside another controller that rewrites every instance history just
    after we read it: each of our If-Match writes loses the race."""

    def get_blob(self, container: str, path: str) -> BlobData:
        blob = super().get_blob(container, path)
        if path.startswith("history/"):
            self.put_blob(container, path, blob.data)  # the same bytes, a new ETag
        return blob


def test_a_hello_whose_history_keeps_changing_stays_queued_and_is_folded_later(
    storage: Storage, settings: StorageSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.ensure_queue(storage.names.events_queue)
    path = Names.history_blob("web", "web-0")
    old = InstanceHistory(role="web", instance="web-0").with_hello("inc0", utcnow(), "0.1.0")
    storage.put_blob(storage.names.state_container, path, encode_document(old))
    storage.send(
        storage.names.events_queue, encode_message(EventBatch(sender="web-0", events=[hello()]))
    )
    monkeypatch.setattr(fold, "EVENTS_LEASE_S", 1)  # so the kept message comes back soon

    with pytest.raises(ConcurrencyConflict):
        EventFolder(RivalController(settings)).fold_once()
    assert storage.approximate_count(storage.names.events_queue) == 1, "the event was kept"

    folder = EventFolder(storage)  # the rival has gone quiet
    wait_for(lambda: folder.fold_once().hellos, what="the hello to be folded again")
    history = decode_document(
        storage.get_blob(storage.names.state_container, path).data, InstanceHistory
    )
    assert [i.incarnation for i in history.incarnations] == ["inc0", "inc1"]
    assert storage.approximate_count(storage.names.events_queue) == 0


def test_malformed_events_are_poisoned_and_do_not_block_the_rest(storage: Storage) -> None:
    storage.ensure_queue(storage.names.events_queue)
    make_run(storage, ["web-0"])
    storage.send(storage.names.events_queue, "not an event")
    storage.send(
        storage.names.events_queue,
        encode_message(
            EventBatch(sender="web-0", events=[completion(instance="web-0", job_id="r1.web-0")])
        ),
    )
    stats = EventFolder(storage).fold_all()
    assert stats.poisoned == 1 and stats.completions == 1
    assert RunStore(storage).get("r1").targets["web-0"].state.ok
    poison = storage.peek(storage.names.poison_queue(storage.names.events_queue))
    assert len(poison) == 1


def test_cancel_stops_dispatch_removes_queued_work_and_stops_the_running_job(
    workers: Fleet, env: dict[str, str], ledger: Ledger, tmp_path: Path, ops: Operator
) -> None:
    """While it runs, status shows the target running, with its instance. Cancel: nothing
    more is dispatched, and the running job is stopped at its next lease renewal (every 2 s
    with the tests' 4 s lease), long before it would end, and reads cancelled."""
    for i in range(3):
        workers.worker("web", f"web-{i}")
    wait_for(lambda: len(cli_json(env, "instances")) == 3, what="3 instances")
    s = tmp_path / "slow.sh"
    s.write_text(f'#!/bin/sh\necho "ran $ROLECALL_INSTANCE" >> {ledger.path}\nsleep 60\n'
                 f'echo "end $ROLECALL_INSTANCE" >> {ledger.path}\n')  # fmt: skip
    run_id = cli(
        env, "run", "web", "--script", str(s), "--each", "--max-concurrency", "1"
    ).stdout.strip()
    (who,) = [e[1] for e in wait_for(lambda: ledger.entries("ran"), what="the first target")]
    running = wait_for(
        lambda: [t for t in cli_json(env, "status", run_id)["targets"] if t["state"] == "running"],
        what="status to show the target running",
    )
    assert [(t["target"], t["instance"]) for t in running] == [(who, who)]
    r = cli(env, "cancel", run_id)
    assert r.returncode == 0, r.stderr
    assert f"stopping it on {who}" in r.stdout
    r = cli(env, "wait", run_id, "--timeout", "60")
    doc = cli_json(env, "status", run_id)
    assert doc["state"] == "cancelled"
    assert [t["state"] for t in doc["targets"]] == ["cancelled"] * 3
    assert len(ledger.entries("ran")) == 1, "nothing dispatched after the cancel"
    assert ledger.entries("end") == [], "the running job was stopped, not waited for"
    again = cli(env, "cancel", run_id)
    assert again.returncode == 0 and "was already cancelled; nothing changed" in again.stdout


def test_cancelling_a_finished_run_says_so_and_changes_nothing(
    workers: Fleet, env: dict[str, str], tmp_path: Path
) -> None:
    workers.worker("web", "web-0")
    wait_for(lambda: cli_json(env, "instances"), what="the instance")
    s = tmp_path / "quick.sh"
    s.write_text("#!/bin/sh\necho done\n")
    r = cli(env, "run", "web", "--script", str(s), "--any", "--wait", "--wait-timeout", "60")
    run_id = r.stdout.splitlines()[0]
    r = cli(env, "cancel", run_id)
    assert r.returncode == 0 and "had already finished (succeeded); nothing changed" in r.stdout
    assert cli_json(env, "status", run_id)["state"] == "succeeded"


def test_logs_prints_the_full_log_of_a_failed_job(
    workers: Fleet, env: dict[str, str], tmp_path: Path
) -> None:
    workers.worker("web", "web-0")
    wait_for(lambda: cli_json(env, "instances"), what="the instance")
    s = tmp_path / "noisy.sh"
    s.write_text("#!/bin/sh\nseq 1 2000\necho boom >&2\nexit 2\n")
    r = cli(
        env,
        "run",
        "web",
        "--script",
        str(s),
        "--any",
        "--max-attempts",
        "1",
        "--wait",
        "--wait-timeout",
        "60",
    )
    assert r.returncode == 1
    run_id = r.stdout.splitlines()[0]
    log = cli(env, "logs", run_id, "any").stdout
    assert log.splitlines()[1] == "1" and "2000" in log and "boom" in log
