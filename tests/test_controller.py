"""The operators' side, through the CLI: runs, rate control, status, wait, fleet, poison."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from tests.fleet import (
    ROLECALL,
    Fleet,
    Ledger,
    Operator,
    cli,
    cli_json,
    wait_for,
    write_baseline,
)


def script(tmp: Path, name: str, body: str) -> Path:
    p = tmp / name
    p.write_text("#!/bin/sh\nset -e\n" + body + "\n")
    return p


def timed(ledger: Ledger, seconds: float = 1.0) -> str:
    """Records start and end times from the instance's own clock."""
    return (
        f'echo "start $ROLECALL_INSTANCE $(date +%s.%N)" >> {ledger.path}\n'
        f"sleep {seconds}\n"
        f'echo "end $ROLECALL_INSTANCE $(date +%s.%N)" >> {ledger.path}'
    )


def max_overlap(ledger: Ledger) -> int:
    edges = [(float(t), +1) for _, _, t in ledger.entries("start")]
    edges += [(float(t), -1) for _, _, t in ledger.entries("end")]
    level = peak = 0
    for _, d in sorted(edges, key=lambda e: (e[0], e[1])):
        level += d
        peak = max(peak, level)
    return peak


def start_fleet(workers: Fleet, n: int, *args: str) -> None:
    for i in range(n):
        workers.worker("web", f"web-{i}", *args)
    wait_for(lambda: len(workers.env and _live(workers.env)) >= n, what=f"{n} live instances")


def _live(env: dict[str, str]) -> list[str]:
    rows = cli_json(env, "instances", "--role", "web")
    return [r["instance"] for r in rows if r["live"]]


def test_each_with_max_concurrency_never_exceeds_it(
    workers: Fleet, env: dict[str, str], ledger: Ledger, tmp_path: Path
) -> None:
    start_fleet(workers, 5)
    s = script(tmp_path, "rotate.sh", timed(ledger, 0.8))
    r = cli(env, "run", "web", "--script", str(s), "--each", "--max-concurrency", "2", "--wait")
    assert r.returncode == 0, r.stdout + r.stderr
    run_id = r.stdout.splitlines()[0]
    assert len(ledger.entries("start")) == 5
    assert max_overlap(ledger) <= 2
    doc = cli_json(env, "status", run_id)
    assert doc["state"] == "succeeded" and doc["run_id"] == run_id
    assert sorted(t["instance"] for t in doc["targets"]) == [f"web-{i}" for i in range(5)]
    assert all(
        t["state"] == "succeeded" and t["exit_code"] == 0 and t["attempts"] == 1
        for t in doc["targets"]
    )
    table = cli(env, "status", run_id).stdout
    assert sum(f"web-{i}" in table for i in range(5)) == 5


def test_max_errors_stops_dispatch_and_wait_fails(
    workers: Fleet, env: dict[str, str], tmp_path: Path
) -> None:
    start_fleet(workers, 5)
    s = script(tmp_path, "flaky.sh", 'case "$ROLECALL_INSTANCE" in web-0|web-1) exit 7;; esac')
    r = cli(
        env,
        "run",
        "web",
        "--script",
        str(s),
        "--each",
        "--max-concurrency",
        "1",
        "--max-errors",
        "1",
        "--max-attempts",
        "1",
        "--wait",
        "--wait-timeout",
        "60",
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed: web-0, web-1; not dispatched: web-2, web-3, web-4" in r.stderr
    run_id = r.stdout.splitlines()[0]
    states = {t["instance"]: t["state"] for t in cli_json(env, "status", run_id)["targets"]}
    assert states == {
        "web-0": "failed",
        "web-1": "failed",
        "web-2": "not_dispatched",
        "web-3": "not_dispatched",
        "web-4": "not_dispatched",
    }
    w = cli(env, "wait", run_id, "--timeout", "5")
    assert w.returncode == 1


def test_lost_instances_are_not_targeted_and_shown_lost(
    workers: Fleet, env: dict[str, str], ledger: Ledger, tmp_path: Path
) -> None:
    for i in range(3):
        workers.worker("web", f"web-{i}", "--heartbeat", "1")
    wait_for(lambda: len(_live(env)) == 3, what="3 live")
    workers.workers[2].kill()  # lost without a word: its record just stops being refreshed
    wait_for(lambda: _live(env) == ["web-0", "web-1"], timeout=20, what="web-2 to read lost")
    rows = {r["instance"]: r for r in cli_json(env, "instances")}
    assert rows["web-2"]["live"] is False and rows["web-2"]["liveness"] == "lost"
    assert "lost" in cli(env, "instances").stdout
    s = script(tmp_path, "x.sh", f'echo "ran $ROLECALL_INSTANCE" >> {ledger.path}')
    r = cli(env, "run", "web", "--script", str(s), "--each", "--wait", "--wait-timeout", "60")
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(e[1] for e in ledger.entries("ran")) == ["web-0", "web-1"]


def test_a_baseline_change_reaches_live_instances_through_the_cli(
    workers: Fleet, env: dict[str, str], ledger: Ledger, tmp_path: Path
) -> None:
    start_fleet(workers, 3)
    b = write_baseline(tmp_path / "b", [("mark", ledger.script("v1"))])
    r = cli(env, "baseline", "set", "web", str(b))
    assert r.returncode == 0, r.stderr
    assert "3 live instances notified" in r.stdout
    w = cli(env, "wait", "baseline-web-v1", "--timeout", "60")
    assert w.returncode == 0, w.stdout
    assert sorted(e[1] for e in ledger.entries("v1")) == ["web-0", "web-1", "web-2"]
    shown = cli_json(env, "baseline", "show", "web")
    assert shown["version"] == 1 and shown["steps"][0]["name"] == "mark"
    wait_for(
        lambda: all(r["baseline_version"] == 1 for r in cli_json(env, "instances")),
        what="instances to record v1",
    )
    stale = cli(env, "baseline", "set", "web", str(b), "--if-version", "0")
    assert stale.returncode == 2 and "version 1, not 0" in stale.stderr


def test_two_controllers_at_once_make_the_same_records_as_one(
    workers: Fleet, env: dict[str, str], ledger: Ledger, tmp_path: Path
) -> None:
    start_fleet(workers, 4)
    services = [
        subprocess.Popen(
            [ROLECALL, "controller", "--poll-max", "0.3"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        s = script(tmp_path, "c.sh", timed(ledger, 0.3))
        r = cli(env, "run", "web", "--script", str(s), "--each", "--max-concurrency", "1")
        run_id = r.stdout.strip()
        wait_for(
            lambda: cli_json(env, "status", run_id, "--no-fold")["state"] == "succeeded",
            timeout=60,
            what="the services to drive the run to the end",
        )
    finally:
        for p in services:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    doc = cli_json(env, "status", run_id, "--no-fold")
    assert [(t["instance"], t["state"], t["attempts"]) for t in doc["targets"]] == [
        (f"web-{i}", "succeeded", 1) for i in range(4)
    ]
    assert len(ledger.entries("start")) == 4, "no target dispatched twice"
    assert max_overlap(ledger) == 1


def test_operator_errors_are_clear_and_have_no_traceback(
    env: dict[str, str], tmp_path: Path, ops: Operator
) -> None:
    r = cli(env, "status", "r-nope")
    assert r.returncode == 2 and "no run 'r-nope'" in r.stderr and "Traceback" not in r.stderr
    s = script(tmp_path, "x.sh", "true")
    r = cli(env, "run", "no-such-role", "--script", str(s), "--any")
    assert r.returncode == 2 and "no-such-role" in r.stderr and "Traceback" not in r.stderr
    bad = dict(
        env,
        AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName="
        "x;AccountKey=eA==;QueueEndpoint=http://127.0.0.1:9/x;BlobEndpoint=http://127.0.0.1:9/x",
    )
    r = cli(bad, "instances", timeout=120)
    assert r.returncode == 2 and "unavailable" in r.stderr and "Traceback" not in r.stderr
    assert "eA==" not in r.stderr
    r = cli(env, "run", "web", "--script", str(s), "--any", "--each")
    assert r.returncode == 2 and "exactly one" in r.stderr


def test_poison_list_show_requeue_purge(
    ops: Operator, workers: Fleet, env: dict[str, str], ledger: Ledger
) -> None:
    q = ops.names.role_queue("web")
    payload = ops.publish(ledger.script("fixed"))
    ops.enqueue(ops.job("web", payload, job_id="died-once", max_attempts=1))
    ops.storage.receive(q, max_messages=1, visibility_s=2)  # its one attempt died with it
    ops.send_raw(q, "garbage")
    workers.worker("web", "web-0")
    wait_for(lambda: len(ops.poison(q)) == 2, what="two poison records")
    listed = cli_json(env, "poison", "list", "web")
    assert sorted(e["record"]["reason"] for e in listed) == ["attempts_exhausted", "malformed"]
    garbage = next(e for e in listed if e["record"]["reason"] == "malformed")
    shown = json.loads(cli(env, "poison", "show", garbage["message_id"], "-o", "json").stdout)
    assert shown["record"]["original"] == "garbage"
    assert cli(env, "poison", "purge", garbage["message_id"]).returncode == 0
    died = next(e for e in cli_json(env, "poison", "list", "web"))
    r = cli(env, "poison", "requeue", died["message_id"])
    assert r.returncode == 0 and "requeued 1" in r.stdout
    wait_for(lambda: ledger.entries("fixed"), what="the requeued job to run, attempts reset")
    assert ops.poison(q) == []
