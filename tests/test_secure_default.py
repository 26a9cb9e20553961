"""Secure by default (issue 15, finding 1): nothing runs or is sent unsigned unless someone
said so, by an option whose name says it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rolecall.schemas import JobEnvelope, decode_message, encode_message
from rolecall.schemas.names import Names
from rolecall.schemas.records import InstanceRecord
from tests.fleet import Fleet, Ledger, Operator, cli, wait_for

WEB_0 = ["--role", "web", "--instance", "web-0"]


def without(env: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in keys}


def test_a_worker_that_trusts_no_key_refuses_to_start(env: dict[str, str], tmp_path: Path) -> None:
    bare = without(env, "ROLECALL_TRUSTED_KEYS")
    r = cli(bare, "worker", *WEB_0, "--state-dir", str(tmp_path / "s"), "--once")
    assert r.returncode == 2, r.stdout + r.stderr
    [line] = r.stderr.splitlines()
    assert "no trusted key" in line and "--accept-unsigned" in line
    assert "rolecall keys generate --out FILE" in line and "Traceback" not in r.stderr
    assert not (tmp_path / "s").exists()  # refused before it became an incarnation


def record_of(ops: Operator, instance: str) -> dict[str, object]:
    from rolecall.controller.fleet import list_instances

    wait_for(lambda: list_instances(ops.storage, "web"), what="the instance record")
    blob = Names.instance_blob("web", instance)
    data: dict[str, object] = json.loads(ops.storage.get_blob(ops.names.state_container, blob).data)
    return data


def test_a_worker_told_to_accept_unsigned_says_so_in_its_log_and_its_record(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str]
) -> None:
    workers.env = without(env, "ROLECALL_TRUSTED_KEYS")
    w = workers.worker("web", "web-0", "--accept-unsigned")
    record = InstanceRecord.model_validate(record_of(ops, "web-0"))
    assert record.accepts_unsigned is True
    assert "no trusted key, --accept-unsigned: running unsigned jobs" in w.log()
    unsigned = encode_message(ops.job("web", ops.publish(ledger.script("u"))))
    ops.send_raw(ops.names.role_queue("web"), unsigned)
    wait_for(lambda: ledger.entries("u"), what="the unsigned job, accepted as told")


def test_a_signed_worker_record_does_not_claim_to_accept_unsigned(
    ops: Operator, workers: Fleet
) -> None:
    workers.worker("web", "web-0")
    assert "accepts_unsigned" not in record_of(ops, "web-0")


def test_commands_that_send_jobs_refuse_without_a_signing_key(
    ops: Operator, env: dict[str, str], tmp_path: Path
) -> None:
    role_q = ops.names.role_queue("web")
    ops.storage.ensure_queue(role_q)
    job = tmp_path / "j.sh"
    job.write_text("true\n")
    baseline = tmp_path / "b.yaml"
    baseline.write_text("steps:\n  - name: s\n    script: j.sh\n")
    bare = without(env, "ROLECALL_SIGNING_KEY")
    for argv in (["run", "web", "--script", str(job), "--any"],
                 ["baseline", "set", "web", str(baseline)],
                 ["retry", "r20261126-101500-1a2b3c", "--failed"],
                 ["cancel", "r20261126-101500-1a2b3c"],
                 ["poison", "requeue", "--all", "--queue", f"{role_q}-poison"]):  # fmt: skip
        r = cli(bare, *argv)
        assert r.returncode == 2, r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        assert "no signing key" in line and "rolecall keys generate --out FILE" in line
        assert "ROLECALL_SIGNING_KEY" in line and "--unsigned" in line
    assert ops.storage.peek(role_q) == []
    r = cli(bare, "run", "web", "--script", str(job), "--any", "--unsigned")
    assert r.returncode == 0, r.stderr
    [msg] = ops.storage.peek(role_q)
    assert decode_message(msg.content, JobEnvelope).signature is None


def test_worker_check_reports_the_trust_configuration(env: dict[str, str], tmp_path: Path) -> None:
    bare = without(env, "ROLECALL_TRUSTED_KEYS")
    argv = ["worker", "--check", *WEB_0, "--state-dir", str(tmp_path / "s")]
    r = cli(bare, *argv)
    assert r.returncode == 2 and re.search(r"FAIL\s+trusted keys\s+no trusted key", r.stdout)
    r = cli(bare, *argv, "--accept-unsigned")
    assert r.returncode == 0 and re.search(r"warn\s+trusted keys\s+none; --accept", r.stdout)
    r = cli(env, *argv)
    assert r.returncode == 0 and re.search(r"ok\s+trusted keys\s+1 Ed25519 key", r.stdout)
