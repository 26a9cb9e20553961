"""A signed job runs only as the message it was sent in, once (issue 15, findings 2 and 3).

The attacker holds web-0's own SAS bundle: it may claim and update messages on its role queue
(the update right renews leases, and also replaces content), never send to it. Someone with
send rights (a second tool, a leaked operator token) may put an old signed message back.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rolecall.controller import sender
from rolecall.controller.sas import issue_worker_sas
from rolecall.controller.signing import Stamp, job_data
from rolecall.schemas import JobEnvelope, Outcome, decode_message, encode_message, utcnow
from rolecall.schemas.codec import encode_document
from rolecall.schemas.jobs import DEFAULT_DEADLINE_S
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from rolecall.worker.trust import TrustedKeys
from tests.conftest import OperatorKey
from tests.fleet import Fleet, Ledger, Operator, cli, wait_for


def stolen(storage: Storage, tmp_path: Path, role: str, instance: str) -> Storage:
    """Storage as a compromised instance sees it: its own SAS bundle and nothing else."""
    bundle = issue_worker_sas(storage, role, instance, hours=1)
    path = tmp_path / f"{instance}.sas.json"
    path.write_bytes(encode_document(bundle))
    return Storage(StorageSettings(sas_file=path, namespace=storage.names.namespace))


def signed_env(env: dict[str, str], key: OperatorKey) -> dict[str, str]:
    return {**env, "ROLECALL_SIGNING_KEY": str(key.private)}


def script(tmp_path: Path, ledger: Ledger, tag: str, body: str = "") -> Path:
    path = tmp_path / f"{tag}.sh"
    path.write_bytes(ledger.script(tag, body))
    return path


def test_a_claimed_message_rewritten_with_an_old_signed_job_runs_nothing(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str], tmp_path: Path,
    operator_key: OperatorKey,
) -> None:  # fmt: skip
    """web-0 claims a fresh job and replaces its content with a job signed an hour ago (it
    kept a copy when it ran it): web-1 refuses it as ``replayed``, and no report about the
    old run appears. The fresh job is lost: that denial is the documented residual."""
    old = operator_key.signer.sign_job(ops.job(
        "web", ops.publish(ledger.script("old")), run_id="old", job_id="old.any",
        sent_at=utcnow() - timedelta(hours=1),
    ))  # fmt: skip
    web0 = stolen(ops.storage, tmp_path, "web", "web-0")
    fresh = script(tmp_path, ledger, "fresh")
    r = cli(signed_env(env, operator_key), "run", "web", "--script", str(fresh), "--any")
    assert r.returncode == 0, r.stderr
    role_q = ops.names.role_queue("web")
    [msg] = web0.receive(role_q, max_messages=1, visibility_s=60)
    web0.extend(msg, 0, content=encode_message(old))  # the content swap
    workers.worker("web", "web-1", "--trusted-key", str(operator_key.public))
    wait_for(lambda: ops.poison(role_q), what="the swapped message to be refused")
    [refused] = ops.poison(role_q)
    assert (refused.job_id, refused.reason) == ("old.any", "replayed")
    assert ledger.entries("old") == [] and ledger.entries("fresh") == []
    assert ops.completions(run_id="old") == []


def test_a_signed_job_sent_again_after_it_ran_is_refused_even_after_a_reimage(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str], tmp_path: Path,
    operator_key: OperatorKey,
) -> None:  # fmt: skip
    """The copy of a completed job, sent again by someone with send rights, is refused by
    the instance that ran it, even once a reimage has wiped its memory of the job. (The job
    outlasts a 5 s window, so the copy goes out beyond it.)"""
    once = script(tmp_path, ledger, "once", "sleep 6")
    ops.storage.ensure_queue(ops.names.role_queue("web"))
    r = cli(signed_env(env, operator_key), "run", "web", "--script", str(once), "--any")
    assert r.returncode == 0, r.stderr
    role_q = ops.names.role_queue("web")
    [sent] = ops.storage.peek(role_q)
    workers.env = {**env, "ROLECALL_REPLAY_WINDOW_S": "5"}
    w = workers.worker("web", "web-0", "--trusted-key", str(operator_key.public))
    wait_for(lambda: ops.completions(outcome=Outcome.SUCCEEDED), what="the job to run")
    w.reimage(restart=True)
    ops.send_raw(role_q, sent.content)
    wait_for(lambda: ops.poison(role_q), what="the copy to be refused")
    assert [p.reason for p in ops.poison(role_q)] == ["replayed"]
    assert len(ledger.entries("once")) == 1


def test_every_run_job_has_a_seven_day_deadline_and_a_signed_send_time(
    ops: Operator, env: dict[str, str], tmp_path: Path, operator_key: OperatorKey
) -> None:
    ops.storage.ensure_queue(ops.names.role_queue("web"))
    job_file = tmp_path / "j.sh"
    job_file.write_text("true\n")
    r = cli(signed_env(env, operator_key), "run", "web", "--script", str(job_file), "--any")
    assert r.returncode == 0, r.stderr
    [msg] = ops.storage.peek(ops.names.role_queue("web"))
    job = decode_message(msg.content, JobEnvelope)
    assert job.not_after is not None and job.sent_at is not None and msg.inserted_on
    assert job.not_after - job.created_at == timedelta(seconds=DEFAULT_DEADLINE_S)
    assert abs((msg.inserted_on - job.sent_at).total_seconds()) < 120
    TrustedKeys([operator_key.public]).verify(msg.content, True)


def test_a_rate_controlled_run_stamps_each_wave_when_it_is_sent(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str], tmp_path: Path,
    operator_key: OperatorKey,
) -> None:  # fmt: skip
    """One target at a time, each job outlasting a 5 s replay window: the second wave is sent
    after the first job finished, and is accepted only because it is stamped then."""
    workers.env = {**env, "ROLECALL_REPLAY_WINDOW_S": "5"}
    for name in ("web-0", "web-1"):
        workers.worker("web", name, "--trusted-key", str(operator_key.public))
    wait_for(lambda: len(ops.hellos("web-0") + ops.hellos("web-1")) >= 2, what="both hellos")
    slow = script(tmp_path, ledger, "slow", "sleep 6")
    r = cli(
        signed_env(env, operator_key), "run", "web", "--script", str(slow), "--each",
        "--max-concurrency", "1", "--wait", "--wait-timeout", "90",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert sorted(e[1] for e in ledger.entries("slow")) == ["web-0", "web-1"]


def test_a_wave_sent_by_worker_processes_is_stamped_and_signed_by_them(
    ops: Operator, operator_key: OperatorKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past PROCESS_THRESHOLD messages the wave goes out through processes, each sealing the
    messages it sends (here the threshold is lowered so a few messages take that path)."""
    monkeypatch.setattr(sender, "PROCESS_THRESHOLD", 2)
    monkeypatch.setattr(sender, "CHUNK", 2)
    queue = ops.names.instance_queue("web-0")
    ops.storage.ensure_queue(queue)
    jobs = [job_data(ops.job("web", None, action="reconcile", instance="web-0", job_id=f"r{i}"))
            for i in range(6)]  # fmt: skip
    stamp = Stamp(operator_key.signer)
    assert sender.send_wave(ops.storage, [(queue, j, False) for j in jobs], stamp) == 6
    trusted = TrustedKeys([operator_key.public])
    for msg in ops.storage.peek(queue):
        job = decode_message(msg.content, JobEnvelope)
        assert job.sent_at is not None and msg.inserted_on is not None
        assert abs((msg.inserted_on - job.sent_at).total_seconds()) < 120
        trusted.verify(msg.content, True)
