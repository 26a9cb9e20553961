"""A newcomer's first day, through the real CLI against Azurite: every finding of the issue
"one clear line for every mistake, runs you can list and retry, instances you can trust",
asserted as the user sees it (the line, the exit code, a JSON document that parses)."""

from __future__ import annotations

import io
import json
import signal
import tarfile
from pathlib import Path

import pytest

from rolecall.cli import run as rolecall
from tests.fleet import Fleet, Operator, Worker, cli, cli_json, wait_for, write_baseline

REPO = Path(__file__).resolve().parents[1]
FAST = ["--heartbeat", "1"]


def one_line(r: object, *needles: str, code: int = 2, prefix: str = "error: ") -> str:
    """The failure is one line on stderr, naming what to fix, with its exit code."""
    out = f"{r.stdout}\n--- stderr\n{r.stderr}"  # type: ignore[attr-defined]
    assert r.returncode == code, out  # type: ignore[attr-defined]
    lines = r.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith(prefix), out
    assert "Traceback" not in out
    for needle in needles:
        assert needle in lines[0], out
    return lines[0]


def script(tmp: Path, name: str, body: str) -> Path:
    p = tmp / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    return p


def archive(tmp: Path) -> Path:
    p = tmp / "site.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        data = b"#!/bin/sh\necho deployed\n"
        info = tarfile.TarInfo("deploy.sh")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return p


def live(env: dict[str, str]) -> list[str]:
    return [r["instance"] for r in cli_json(env, "instances") if r["liveness"] == "live"]


# --- errors that were not one line ---------------------------------------------------------


def test_every_operator_mistake_is_one_line_and_exit_2(env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - name: a\n    script: a.sh\n   oops: [\n")
    one_line(cli(env, "baseline", "set", "tst", str(bad)), "not valid YAML at line 4")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    one_line(cli(env, "baseline", "set", "tst", str(empty)), "is empty")
    s = script(tmp_path, "x.sh", "true")
    run = ["run", "web", "--script", str(s)]
    one_line(cli(env, *run, "--each", "--max-concurrency", "abc"), "--max-concurrency 'abc'")
    one_line(cli(env, *run, "--any", "--timeout", "0"), "--timeout 0: must be more than 0")
    one_line(cli(env, *run, "--any", "--max-attempts", "0"), "--max-attempts 0")
    one_line(cli(env, *run, "--any", "--timeout", "abc"), "'--timeout'")
    # accepted silently before, and wrong
    one_line(cli(env, *run, "--each", "--deadline", "-1"), "--deadline -1")
    one_line(cli(env, *run, "--any", "--max-concurrency", "2"), "pace --each runs")
    tgz = archive(tmp_path)
    one_line(cli(env, "run", "web", "--script", str(tgz), "--any"), "--entrypoint")
    one_line(cli(env, *run, "--any", "--wait-timeout", "5"), "--wait-timeout needs --wait")
    one_line(cli(env, "status", "r-nope"), "no run 'r-nope'")
    nothing = cli(env, *run, "--any", "--namespace", "undeployed")
    one_line(nothing, "undeployed-payloads", "ContainerNotFound", "is this namespace deployed")
    debug = cli(env, "status", "r-nope", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr, "--debug brings it back"
    one_line(cli(env, "status"), "missing argument 'RUN'", "rolecall status --help")
    one_line(cli(env, "stauts"), "no such command")
    # piped errors are not wrapped at 80 columns
    no_account = {k: v for k, v in env.items() if not k.startswith("AZURE_")}
    line = one_line(cli(no_account, "runs"), "no storage account configured")
    assert len(line) > 80


def test_worker_start_up_mistakes_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for state_dir, said in ((afile, "is a file"), (afile / "sub", "is a file"),
                            (Path("/proc/rolecall-state"), "cannot create it")):  # fmt: skip
        r = cli(env, "worker", "--role", "web", "--instance", "w", "--state-dir", str(state_dir))
        one_line(r, f"state directory {state_dir}", said, prefix="rolecall worker: ")


def test_sigterm_while_storage_is_unreachable_at_boot_stops_cleanly(
    env: dict[str, str], tmp_path: Path
) -> None:
    dead = dict(env, AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;"
                "AccountName=x;AccountKey=eA==;QueueEndpoint=http://127.0.0.1:9/x;"
                "BlobEndpoint=http://127.0.0.1:9/x")  # fmt: skip
    w = Worker("web", "web-0", tmp_path, dead, ["--log-format", "text"]).start()
    try:
        wait_for(lambda: "retrying" in w.logs(), timeout=60, what="a storage retry at boot")
        w.signal(signal.SIGTERM)
        assert w.wait(90) == 0
    finally:
        w.kill()
    assert "Traceback" not in w.logs() and "agent stopped" in w.logs()


# --- output conventions --------------------------------------------------------------------


def test_output_is_one_document_or_one_table_or_tsv(
    workers: Fleet, env: dict[str, str], tmp_path: Path, namespace: str
) -> None:
    workers.worker("web", "web-0", *FAST)
    wait_for(lambda: live(env) == ["web-0"], what="web-0 live")
    s = script(tmp_path, "x.sh", "echo hi")
    r = cli(env, "run", "web", "--script", str(s), "--any", "--wait", "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)  # the run id went to stderr, not before the document
    assert doc["state"] == "succeeded" and doc["run_id"] in r.stderr
    assert json.loads(cli(env, "status", doc["run_id"], "--output=JSON").stdout)["state"]
    one_line(cli(env, "status", doc["run_id"], "-o", "yaml"), "'yaml' is not one of")
    tsv = cli(env, "instances", "-o", "tsv").stdout.splitlines()
    assert tsv[0].split("\t")[:3] == ["web", "web-0", "live"]
    table = cli(env, "status", doc["run_id"]).stdout
    assert "1 target (" in table and "1 targets" not in table
    # global options after the subcommand
    other = cli_json(env, "names", "web", "--namespace", "elsewhere")
    assert other["role_queue"] == "elsewhere-role-web"
    assert cli(env, "instances", "--namespace", "nobody").stdout.strip() == (
        "no instances registered"
    )
    assert cli(env, "runs", "--role", "db").stdout.strip() == "no runs match"
    assert cli(env, "poison", "list").stdout.strip() == "no poisoned messages"


def _leaves(args: list[str], capsys: pytest.CaptureFixture[str]) -> list[list[str]]:
    assert rolecall([*args, "--help"]) == 0
    text = capsys.readouterr().out
    if "Commands:" not in text:
        return [args]
    names = [ln.split()[0] for ln in text.split("Commands:")[1].splitlines() if ln.strip()]
    return [leaf for n in names for leaf in _leaves([*args, n], capsys)]


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert rolecall(["--version"]) == 0
    assert "contract 1." in capsys.readouterr().out
    assert rolecall(["--help"]) == 0
    assert "--install-completion" in capsys.readouterr().out
    leaves = _leaves([], capsys)
    assert len(leaves) >= 20
    for leaf in leaves:
        assert rolecall([*leaf, "--help"]) == 0
        text = capsys.readouterr().out
        assert "Example" in text, leaf
        assert "list[" not in text, leaf
        examples = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("rolecall ")]
        assert examples and all(not ln.endswith("-") for ln in examples), leaf


# --- instances you can trust -----------------------------------------------------------------


def test_instances_you_can_trust(workers: Fleet, env: dict[str, str], tmp_path: Path) -> None:
    for i in range(2):
        workers.worker("web", f"web-{i}", *FAST)
    wait_for(lambda: live(env) == ["web-0", "web-1"], what="two live instances")
    s = script(tmp_path, "x.sh", "echo hi")
    typo = cli(env, "run", "web", "--script", str(s), "--each", "--instance", "web-77")
    one_line(typo, "no instance 'web-77'", "web-0, web-1", "--allow-unregistered")
    # a second agent under a running name refuses; the first keeps its name and its work
    dup = Worker("web", "web-0", tmp_path / "other-disk", env, FAST).start()
    workers.workers.append(dup)
    assert dup.wait(60) == 2 and "held by another running agent" in dup.logs()
    # a SIGKILLed instance reads lost, and wait says so instead of hanging
    workers.workers[1].kill()
    wait_for(lambda: live(env) == ["web-0"], timeout=30, what="web-1 to read lost")
    r = cli(env, "run", "web", "--script", str(s), "--each", "--instance", "web-1")
    w = cli(env, "wait", r.stdout.strip(), "--timeout", "120")
    assert w.returncode == 1, w.stdout + w.stderr
    assert "unreachable: web-1 (instance lost" in w.stderr and "unreachable" in w.stdout
    every = cli(env, "run", "web", "--script", str(s), "--each", "--wait", "-o", "json")
    assert every.returncode == 0, every.stderr
    assert [t["instance"] for t in json.loads(every.stdout)["targets"]] == ["web-0"]


def test_baseline_failures_are_visible(workers: Fleet, env: dict[str, str], tmp_path: Path) -> None:
    w = workers.worker("web", "web-0", *FAST, "--log-format", "json")
    wait_for(lambda: live(env) == ["web-0"], what="web-0 live")
    b = write_baseline(tmp_path / "b", [("first", b"#!/bin/sh\necho one; sleep 0.2\n"),
                                        ("second", b"#!/bin/sh\necho two; echo boom >&2; exit 3\n")])  # fmt: skip
    assert cli(env, "baseline", "set", "web", str(b)).returncode == 0
    assert cli(env, "wait", "baseline-web-v1", "--timeout", "60").returncode == 1
    warned = [json.loads(ln) for ln in w.logs().splitlines() if '"warning"' in ln]
    assert any(e["msg"].startswith("baseline v1 step 1 'second' failed (exit 3)") for e in warned)
    row = wait_for(lambda: next((r for r in cli_json(env, "instances")
                                 if r["baseline_failure"]), None), what="the failure recorded")  # fmt: skip
    assert (row["baseline_failure"]["version"], row["baseline_failure"]["step"]) == (1, 1)
    assert "v1 step 1 'second' failed (exit 3)" in cli(env, "instances").stdout
    logs = cli(env, "logs", "baseline-web-v1", "web-0").stdout
    assert "=== step 0: succeeded" in logs and "one" in logs and "two" in logs and "boom" in logs
    target = cli_json(env, "status", "baseline-web-v1")["targets"][0]
    assert target["duration_s"] >= 0.2, "a baseline takes as long as its steps"


# --- what operators reach for ----------------------------------------------------------------


def test_runs_retry_history_follow_and_decoded_poison(
    workers: Fleet, env: dict[str, str], tmp_path: Path, ops: Operator
) -> None:
    for i in range(2):
        workers.worker("web", f"web-{i}", *FAST)
    wait_for(lambda: live(env) == ["web-0", "web-1"], what="two live instances")
    once = tmp_path / "failed-once"
    flaky = script(tmp_path, "flaky.sh", f'if [ "$ROLECALL_INSTANCE" = web-1 ] && '
                   f"[ ! -e {once} ]; then touch {once}; echo disk full >&2; exit 1; fi; echo ok")  # fmt: skip
    run_id = cli(env, "run", "web", "--script", str(flaky), "--each", "--max-attempts", "1").stdout
    run_id = run_id.strip()
    w = cli(env, "wait", run_id, "--timeout", "60")
    assert w.returncode == 1 and f"rolecall retry {run_id} --failed" in w.stderr
    listed = cli_json(env, "runs", "--state", "failed", "--role", "web")
    assert [r["run_id"] for r in listed] == [run_id] and listed[0]["summary"]["failed"] == 1
    retry = cli(env, "retry", run_id, "--failed", "--wait", "-o", "json")
    assert retry.returncode == 0, retry.stderr
    again = json.loads(retry.stdout)
    assert [t["instance"] for t in again["targets"]] == ["web-1"]
    assert again["description"].startswith(f"retry of {run_id}")
    follow = cli(env, "logs", again["run_id"], "--follow")
    assert follow.returncode == 0 and "ok" in follow.stdout

    def jobs() -> set[str]:
        events = cli_json(env, "history", "web-1")["events"]
        return {e["detail"].split(":")[0] for e in events if e["what"] == "job"}

    wait_for(lambda: jobs() >= {run_id, again["run_id"]}, what="both runs in web-1's history")
    poisoned = wait_for(lambda: cli_json(env, "poison", "list", "web"), what="the poisoned job")
    message = poisoned[0]["message_id"]
    shown = cli(env, "poison", "show", message).stdout
    assert "original job:" in shown and '"kind": "job"' in shown and "flaky.sh" in shown
    record = cli_json(env, "poison", "show", message)["record"]
    assert record["original"]["run_id"] == run_id


def test_the_readme_says_how_to_poll_fast_locally_and_what_it_costs() -> None:
    readme = (REPO / "README.md").read_text()
    local = readme[readme.index("Local development") :]
    assert "--poll-max" in local and "month" in local
