"""Baselines only move forward (issue 15, finding 5).

The attacker here may write the state container (an operator's leaked token, a controller
identity): a worker's own SAS bundle only reads baselines. The signed v1, kept from when it
was current, is put back over v2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rolecall.schemas.baseline import Baseline
from rolecall.schemas.codec import decode_document
from rolecall.schemas.names import Names
from tests.fleet import Fleet, Ledger, Operator, cli, cli_json, wait_for, write_baseline


def publish(env: dict[str, str], tmp_path: Path, ledger: Ledger, tag: str, *flags: str) -> None:
    path = write_baseline(tmp_path / tag, [(tag, ledger.script(tag))])
    r = cli(env, "baseline", "set", "web", str(path), *flags)
    assert r.returncode == 0, r.stderr


def web_0(env: dict[str, str]) -> dict[str, Any]:
    """web-0's row in `rolecall instances` ({} until it registers)."""
    return next(
        (r for r in cli_json(env, "instances", "-o", "json") if r["instance"] == "web-0"), {}
    )


def test_an_old_baseline_put_back_is_refused_even_after_a_reimage(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str], tmp_path: Path
) -> None:
    blob = (ops.names.state_container, Names.baseline_blob("web"))
    publish(env, tmp_path, ledger, "v1")
    v1 = ops.storage.get_blob(*blob).data  # signed, and kept by whoever may write there
    publish(env, tmp_path, ledger, "v2")
    w = workers.worker("web", "web-0")
    wait_for(lambda: web_0(env).get("baseline_version") == 2, what="web-0 at v2")
    ops.storage.put_blob(*blob, v1)  # v1 back over v2
    w.reimage(restart=True)  # the disk that knew v2 is gone; its instance record is not
    row = wait_for(lambda: (r := web_0(env)).get("baseline_failure") and r, what="v1 refused")
    assert row["baseline_failure"]["outcome"] == "refused"
    assert "baseline v1 is older than v2" in row["baseline_failure"]["reason"]
    assert row["baseline_version"] is None and row["baseline_high_water"] == 2
    assert ledger.entries("v1") == [] and len(ledger.entries("v2")) == 1


def test_an_operator_signed_rollback_is_taken(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str], tmp_path: Path
) -> None:
    """The baseline blob is lost and numbering starts again at v1, below the v3 web-0 took:
    refused, until the operator publishes with --rollback."""
    for tag in ("v1", "v2", "v3"):
        publish(env, tmp_path, ledger, tag)
    workers.worker("web", "web-0")
    wait_for(lambda: web_0(env).get("baseline_version") == 3, what="web-0 at v3")
    ops.storage.delete_blob(ops.names.state_container, Names.baseline_blob("web"))
    publish(env, tmp_path, ledger, "again")
    row = wait_for(lambda: (r := web_0(env)).get("baseline_failure") and r, what="v1 refused")
    assert "baseline v1 is older than v3" in row["baseline_failure"]["reason"]
    publish(env, tmp_path, ledger, "again", "--rollback")
    wait_for(lambda: web_0(env).get("baseline_version") == 2, what="the rollback taken")
    assert len(ledger.entries("again")) == 1
    raw = ops.storage.get_blob(ops.names.state_container, Names.baseline_blob("web")).data
    baseline = decode_document(raw, Baseline)
    assert (baseline.version, baseline.rollback, baseline.signature is not None) == (2, 3, True)
    assert web_0(env)["baseline_failure"] is None
