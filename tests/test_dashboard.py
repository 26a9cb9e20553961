"""The dashboard and /metrics of ``rolecall controller --http``, over plain HTTP: what the pages
show, what they refuse, what a scrape reports, and what watching costs in transactions.
(The browser test, tests/test_dashboard_browser.py, drives the same pages in Chromium.)"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from rolecall.controller.web.server import Address, parse_address
from rolecall.schemas.errors import ConfigError
from rolecall.storage.clients import Storage
from tests.dashboard import controller, families, get, metrics, samples
from tests.factories import register
from tests.fleet import ROLECALL, Fleet, Ledger, Operator, cli, cli_json, wait_for, write_baseline

TOKEN = "a-token-of-twenty-characters"
REPO = Path(__file__).resolve().parent.parent


def baseline_and_fleet(env: dict[str, str], tmp: Path, workers: Fleet, ledger: Ledger,
                       n: int = 2) -> None:  # fmt: skip
    b = write_baseline(tmp / "b", [("configure", ledger.script("configured"))])
    assert cli(env, "baseline", "set", "web", str(b)).returncode == 0
    for i in range(n):
        workers.worker("web", f"web-{i}")
    wait_for(lambda: sum(r["state"] == "ready" and r["live"] for r in
                         cli_json(env, "instances")) == n, timeout=60, what="the fleet ready")  # fmt: skip


def test_the_pages_show_the_fleet_a_run_with_its_failures_and_poison_and_change_nothing(
    env: dict[str, str], tmp_path: Path, workers: Fleet, ledger: Ledger, ops: Operator,
    storage: Storage,
) -> None:  # fmt: skip
    baseline_and_fleet(env, tmp_path, workers, ledger)
    register(storage, "<img src=x onerror=alert(1)>")  # a hostile record names itself so
    fail = tmp_path / "fail.sh"
    fail.write_text("#!/bin/sh\necho working\necho 'disk full' >&2\nexit 3\n")
    run_id = cli(env, "run", "web", "--script", str(fail), "--each", "--max-attempts", "1",
                 "--instance", "web-0", "--instance", "web-1").stdout.strip()  # fmt: skip
    ops.send_raw(storage.names.instance_queue("web-0"), "this is not a job")
    with controller(env, tmp_path) as c:
        fleet = get(c.url)
        assert fleet.status == 200
        assert re.search(r'data-instance="web-0" data-status="ready"', fleet.body)
        assert "&lt;img src=x onerror=alert(1)&gt;" in fleet.body
        assert "<img src=x" not in fleet.body
        assert "default-src 'none'" in fleet.headers["content-security-policy"]
        run = wait_for(lambda: (r := get(c.url + f"runs/{run_id}")).status == 200
                       and 'aria-valuenow="2"' in r.body and r, what="the run to finish")  # fmt: skip
        assert 'id="run-state">failed' in run.body
        assert "disk full" in run.body and ">3</td>" in run.body
        log = get(c.url + f"runs/{run_id}/logs/web-0")
        assert log.status == 200 and "working" in log.body and "disk full" in log.body
        runs = get(c.url + "runs?state=failed")
        assert run_id in runs.body and f'data-run="{run_id}" data-state="failed"' in runs.body
        assert run_id not in get(c.url + "runs?state=succeeded").body
        poison = wait_for(lambda: "data-reason=" in (p := get(c.url + "poison")).body and p,
                          what="the poisoned message on the poison page")  # fmt: skip
        assert storage.names.poison_queue(storage.names.instance_queue("web-0")) in poison.body
        assert "not a poison record" not in poison.body
        assert get(c.url + "fleet/web?status=ready").status == 200
        assert get(c.url + "runs/r-no-such-run").status == 404
        assert get(c.url + "runs/..%2F..%2Fetc").status == 404
        for path in ("", "runs", f"runs/{run_id}", "poison", "metrics"):
            assert get(c.url + path, method="POST").status == 405, path
        assert 'aria-valuenow="2"' in get(c.url + f"runs/{run_id}?fragment=1").body
        assert get(c.url, headers={"Host": "rebound.example:80"}).status == 400


def test_metrics_match_what_status_and_instances_say(
    env: dict[str, str], tmp_path: Path, workers: Fleet, ledger: Ledger, storage: Storage,
) -> None:  # fmt: skip
    baseline_and_fleet(env, tmp_path, workers, ledger, n=3)
    ok, bad = tmp_path / "ok.sh", tmp_path / "bad.sh"
    ok.write_text("#!/bin/sh\necho fine\n")
    bad.write_text("#!/bin/sh\nexit 1\n")
    runs = [cli(env, "run", "web", "--script", str(ok), "--each").stdout.strip(),
            cli(env, "run", "web", "--script", str(bad), "--any", "--max-attempts", "1").stdout.strip()]  # fmt: skip
    runs.append("baseline-web-v1")
    with controller(env, tmp_path) as c:

        def cli_view() -> tuple[Counter[tuple[str, ...]], Counter[tuple[str, ...]], Counter[tuple[str, ...]]]:  # fmt: skip
            by_state: Counter[tuple[str, ...]] = Counter()
            targets: Counter[tuple[str, ...]] = Counter()
            for run_id in runs:
                doc = cli_json(env, "status", run_id, "--no-fold")
                by_state[(doc["role"], doc["state"])] += 1
                targets.update({(doc["role"], s): n for s, n in doc["summary"].items()})
            rows = cli_json(env, "instances")
            live = {True: "live", False: "lost"}
            instances = Counter((r["role"], r["state"],
                                 "stopped" if r["state"] == "stopped" else live[r["live"]])
                                for r in rows)  # fmt: skip
            return by_state, targets, instances

        def scraped() -> tuple[Counter[tuple[str, ...]], ...]:
            m = metrics(c.url)
            wanted = (("rolecall_runs", ("role", "state")),
                      ("rolecall_run_targets", ("role", "state")),
                      ("rolecall_instances", ("role", "state", "liveness")))  # fmt: skip
            return tuple(
                Counter({tuple(dict(labels)[k] for k in keys): int(n)
                         for labels, n in samples(m, name).items()})
                for name, keys in wanted
            )  # fmt: skip

        def settled() -> bool:
            expected = cli_view()
            return expected[0][("web", "running")] == 0 and scraped() == expected

        wait_for(settled, timeout=60, what="/metrics to agree with status and instances")
        m = metrics(c.url)
        assert samples(m, "rolecall_baseline_version") == {(("role", "web"),): 1.0}
        assert samples(m, "rolecall_baseline_compliant_instances") == {(("role", "web"),): 3.0}
        assert samples(m, "rolecall_baseline_compliance_ratio") == {(("role", "web"),): 1.0}
        assert m[("rolecall_fold_completions_total", ())] >= 4
        assert m[("rolecall_fold_lag_seconds", ())] >= 0
        # what the workers report in their records (as of their last write: reading the baseline)
        reads = m[("rolecall_worker_storage_transactions_total",
                   (("operation", "blob.get"), ("role", "web")))]  # fmt: skip
        assert reads >= 3
        assert m[("rolecall_storage_transactions_total",
                  (("component", "fold"), ("operation", "blob.list")))] > 0  # fmt: skip
        assert m[("rolecall_storage_transactions_total",
                  (("component", "dashboard"), ("operation", "blob.list")))] > 0  # fmt: skip
        info = samples(m, "rolecall_controller_info")
        assert [dict(labels)["namespace"] for labels in info] == [storage.names.namespace]
        documented = (REPO / "docs" / "operators.md").read_text()
        assert [f for f in sorted(families(c.url)) if f"`{f}`" not in documented] == []


# --- who may look ----------------------------------------------------------------------------


def test_a_non_loopback_address_needs_a_token_and_every_request_then_carries_it(
    env: dict[str, str], tmp_path: Path, storage: Storage
) -> None:
    r = cli(env, "controller", "--http", "0.0.0.0:0")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "ROLECALL_HTTP_TOKEN" in r.stderr
    r = cli(env, "controller", "--http", "127.0.0.1:0", "--http-token", "short")
    assert r.returncode == 2 and "at least 16 characters" in r.stderr
    r = cli(env, "controller", "--http", "nonsense:port")
    assert r.returncode == 2 and "PORT" in r.stderr
    with controller(dict(env, ROLECALL_HTTP_TOKEN=TOKEN), tmp_path) as c:
        refused = get(c.url)
        assert refused.status == 401 and "?token=" in refused.body
        assert get(c.url + "metrics").status == 401
        assert get(c.url + "?token=wrong-token-wrong-token").status == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert get(c.url + "metrics", headers=bearer).status == 200
        first = get(c.url + f"runs?role=web&token={TOKEN}")
        assert first.status == 303 and first.headers["location"] == "/runs?role=web"
        cookie = first.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
        jar = {"Cookie": cookie.split(";")[0]}
        assert get(c.url + "runs?role=web", headers=jar).status == 200
        assert get(c.url, headers={**jar, "Host": "rebound.example"}).status == 200


def test_without_the_web_extra_it_says_how_to_install_it_in_one_line(env: dict[str, str]) -> None:
    hide = "import sys; sys.modules['uvicorn'] = None; from rolecall.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", hide, "controller", "--http", "8080"],
                       check=False, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("pip install 'rolecall[web]'")
    assert r.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "address"),
    [("8080", Address("127.0.0.1", 8080)), ("0.0.0.0:80", Address("0.0.0.0", 80)),
     ("[::1]:9000", Address("::1", 9000)), (":9100", Address("0.0.0.0", 9100)),
     ("localhost:0", Address("localhost", 0))],
)  # fmt: skip
def test_addresses_and_which_are_loopback(text: str, address: Address) -> None:
    assert parse_address(text) == address
    assert address.loopback == (address.host in ("127.0.0.1", "::1", "localhost"))


@pytest.mark.parametrize("text", ["::1:80", "web:http", "99999", ""])
def test_addresses_that_are_not(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(text)


def test_rolecall_help_lists_the_dashboard_option(env: dict[str, str]) -> None:
    r = subprocess.run([ROLECALL, "controller", "--help"], env=env, capture_output=True,
                       text=True, check=True)  # fmt: skip
    assert "--http" in r.stdout and "--http-token" in r.stdout
