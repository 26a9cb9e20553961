"""Trust: signed jobs and baselines, secrets that never show, least privilege Azurite proves."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient, ContainerClient
from azure.storage.queue import QueueClient

from rolecall.controller.baselines import publish_baseline
from rolecall.controller.sas import issue_worker_sas
from rolecall.controller.signing import generate, load_signer
from rolecall.schemas import Outcome, encode_message
from rolecall.schemas.codec import encode_document
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from tests.fleet import Fleet, Ledger, Operator, cli, cli_json, wait_for, write_baseline


@pytest.fixture
def keys(tmp_path: Path):  # type: ignore[no-untyped-def]
    a, b, rogue = tmp_path / "a.key", tmp_path / "b.key", tmp_path / "rogue.key"
    for k in (a, b, rogue):
        generate(k)
    return {n: load_signer(p) for n, p in (("a", a), ("b", b), ("rogue", rogue))} | {
        "a_pub": Path(f"{a}.pub"),
        "b_pub": Path(f"{b}.pub"),
        "a_key": a,
    }


def test_only_validly_signed_jobs_for_this_instance_run(
    ops: Operator,
    ledger: Ledger,
    workers: Fleet,
    keys,  # type: ignore[no-untyped-def]
) -> None:
    """Trusting keys a and b (rotation): jobs signed by either run and report the signer;
    unsigned, forged, altered, re-targeted and expired jobs are poisoned, never run."""
    from tests.fleet import in_the_past

    payload = ops.publish(ledger.script("ran"))
    sign_a, sign_b, rogue = keys["a"].sign_job, keys["b"].sign_job, keys["rogue"].sign_job
    good_a = sign_a(ops.job("web", payload, job_id="good-a"))
    good_b = sign_b(ops.job("web", payload, job_id="good-b", instance="web-0"))
    role_q, inst_q = ops.names.role_queue("web"), ops.names.instance_queue("web-0")
    other = ops.publish(ledger.script("evil"))
    bad = {
        "unsigned": ops.job("web", payload, job_id="unsigned"),
        "forged": rogue(ops.job("web", payload, job_id="forged")),
        "altered": sign_a(ops.job("web", payload, job_id="altered")).model_copy(
            update={"payload": other}
        ),
        "for another instance": sign_a(
            ops.job("web", payload, job_id="elsewhere", instance="web-9")
        ),
        "for another role": sign_a(ops.job("db", payload, job_id="db-job")),
        "expired": sign_a(ops.job("web", payload, job_id="late", not_after=in_the_past())),
    }
    ops.send_raw(role_q, encode_message(good_a))
    ops.send_raw(inst_q, encode_message(good_b))
    for name, job in bad.items():
        queue = inst_q if name == "for another instance" else role_q
        ops.send_raw(queue, encode_message(job))
    workers.worker(
        "web", "web-0", "--trusted-key", str(keys["a_pub"]), "--trusted-key", str(keys["b_pub"])
    )
    wait_for(lambda: len(ops.completions()) >= 8, what="every job to be judged")
    done = {c.job_id: c for c in ops.completions()}
    assert (done["good-a"].outcome, done["good-a"].signed_by) == (
        Outcome.SUCCEEDED,
        keys["a"].key_id,
    )
    assert (done["good-b"].outcome, done["good-b"].signed_by) == (
        Outcome.SUCCEEDED,
        keys["b"].key_id,
    )
    wait_for(lambda: len(ops.poison(role_q) + ops.poison(inst_q)) == 6, what="6 poison records")
    reasons = {p.job_id: p.reason for p in ops.poison(role_q) + ops.poison(inst_q)}
    assert reasons == {
        "unsigned": "unsigned",
        "forged": "untrusted_key",
        "altered": "bad_signature",
        "elsewhere": "wrong_instance",
        "db-job": "wrong_role",
        "late": "expired",
    }
    assert len(ledger.entries("ran")) == 2 and ledger.entries("evil") == []


def test_an_unsigned_baseline_is_refused_and_a_signed_one_applied(
    ops: Operator,
    ledger: Ledger,
    workers: Fleet,
    keys,
    tmp_path: Path,
    env: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    b = write_baseline(tmp_path / "b", [("step", ledger.script("base"))])
    publish_baseline(ops.storage, "web", b)  # unsigned
    w = workers.worker("web", "web-0", "--trusted-key", str(keys["a_pub"]))
    wait_for(lambda: "baseline refused" in w.log(), what="the refusal")
    assert ledger.entries("base") == []
    env["ROLECALL_SIGNING_KEY"] = str(keys["a_key"])
    r = cli(env, "baseline", "set", "web", str(b))  # signed by the CLI, reconcile job too
    assert r.returncode == 0, r.stderr
    wait_for(lambda: ledger.entries("base"), what="the signed baseline to be applied")
    c = ops.completions(run_id="baseline-web-v2")
    assert c and c[0].signed_by == keys["a"].key_id


SECRET = "hunter2-this-must-never-show"


def test_secret_values_never_appear_in_logs_completions_status_or_poison(
    workers: Fleet, env: dict[str, str], tmp_path: Path, ops: Operator
) -> None:
    w = workers.worker("web", "web-0")
    wait_for(lambda: cli_json(env, "instances"), what="the instance")
    s = tmp_path / "leaky.sh"
    s.write_text('#!/bin/sh\necho "token is $TOKEN"\necho "again $TOKEN" >&2\nexit 1\n')
    r = cli(
        env,
        "run",
        "web",
        "--script",
        str(s),
        "--any",
        "--secret-env",
        f"TOKEN={SECRET}",
        "--clear-secrets",  # the masking of clear secrets; sealed ones: tests/test_bounds.py
        "--max-attempts",
        "1",
        "--wait",
        "--wait-timeout",
        "60",
    )
    assert r.returncode == 1
    run_id = r.stdout.splitlines()[0]
    outputs = [
        r.stdout,
        r.stderr,
        cli(env, "status", run_id).stdout,
        cli(env, "status", run_id, "-o", "json").stdout,
        cli(env, "logs", run_id, "any").stdout,
        cli(env, "poison", "list", "-o", "json").stdout,
        w.log(),
        str(ops.completions()),
    ]
    assert "token is ***" in cli(env, "logs", run_id, "any").stdout
    for text in outputs:
        assert SECRET not in text


def test_the_payload_cache_is_private(ops: Operator, ledger: Ledger, workers: Fleet) -> None:
    w = workers.worker("web", "web-0")
    ops.enqueue(ops.job("web", ops.publish(ledger.script("x"))))
    wait_for(lambda: ops.completions("run1.any"), what="the job")
    for d in (w.state_dir, w.state_dir / "cache"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700


# --- least privilege, proven by Azurite ----------------------------------------------------


def test_a_worker_with_its_sas_bundle_does_its_whole_job(
    storage: Storage,
    ledger: Ledger,
    workers: Fleet,
    env: dict[str, str],
    tmp_path: Path,
    ops: Operator,
) -> None:
    base = write_baseline(tmp_path / "b", [("s", ledger.script("base"))])
    publish_baseline(storage, "web", base, signer=ops.signer)
    bundle = issue_worker_sas(storage, "web", "web-0", hours=1)
    sas_file = tmp_path / "web-0.sas.json"
    sas_file.write_bytes(encode_document(bundle))
    assert "sig=" not in repr(bundle)
    sas_env = {k: v for k, v in env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    sas_env["ROLECALL_SAS_FILE"] = str(sas_file)
    workers.env = sas_env
    workers.worker("web", "web-0")
    ops.enqueue(
        ops.job("web", ops.publish(ledger.script("any-job", "seq 1 3000; exit 1")), max_attempts=1)
    )
    ops.enqueue(ops.job("web", ops.publish(ledger.script("mine")), instance="web-0"))
    wait_for(lambda: ledger.entries("mine") and ops.completions("run1.any"), what="both jobs")
    assert ledger.entries("base"), "baseline read with the SAS"
    failed = ops.completions("run1.any")[0]
    assert failed.log_blob, "full log uploaded with create-only rights"
    wait_for(lambda: ops.poison(ops.names.role_queue("web")), what="poisoned with add rights")
    from rolecall.controller.fleet import list_instances

    assert [s.instance for s in list_instances(storage, "web")] == ["web-0"], "heartbeat written"


def test_worker_sas_tokens_are_refused_outside_their_scope(storage: Storage) -> None:
    bundle = issue_worker_sas(storage, "web", "web-0", hours=1)
    n = storage.names
    q_url, b_url = bundle.queue_endpoint, bundle.blob_endpoint
    role_token = bundle.queues[n.role_queue("web")].get_secret_value()
    storage.ensure_queue(n.role_queue("db"))
    storage.ensure_container(n.results_container("db"))  # refused for web, not missing

    def queue(name: str, token: str) -> QueueClient:
        return QueueClient(q_url, name, credential=AzureSasCredential(token), retry_total=0)

    def blob(container: str, path: str, token: str) -> BlobClient:
        return BlobClient(
            b_url, container, path, credential=AzureSasCredential(token), retry_total=0
        )

    refusals = {
        "read another role's queue": lambda: list(
            queue(n.role_queue("db"), role_token).receive_messages()
        ),
        "enqueue onto its role queue": lambda: queue(n.role_queue("web"), role_token).send_message(
            "x"
        ),
        "enqueue onto its instance queue": lambda: queue(
            n.instance_queue("web-0"), bundle.queues[n.instance_queue("web-0")].get_secret_value()
        ).send_message("x"),
        "enqueue via the results token": lambda: queue(
            n.role_queue("web"),
            bundle.containers[n.results_container("web")].get_secret_value(),
        ).send_message("x"),
        "read the role's reports": lambda: list(
            ContainerClient(
                b_url,
                n.results_container("web"),
                credential=AzureSasCredential(
                    bundle.containers[n.results_container("web")].get_secret_value()
                ),
                retry_total=0,
            ).list_blobs()
        ),
        "report for another role": lambda: blob(
            n.results_container("db"),
            "x.json",
            bundle.containers[n.results_container("web")].get_secret_value(),
        ).upload_blob(b"{}"),
        "overwrite a payload": lambda: blob(
            n.payloads_container,
            "sha256/" + "0" * 64,
            bundle.containers[n.payloads_container].get_secret_value(),
        ).upload_blob(b"evil", overwrite=True),
        "change the baseline": lambda: blob(
            n.state_container,
            Names.baseline_blob("web"),
            bundle.blobs[f"{n.state_container}/{Names.baseline_blob('web')}"].get_secret_value(),
        ).upload_blob(b"{}", overwrite=True),
        "write another instance's record": lambda: blob(
            n.state_container,
            Names.instance_blob("web", "web-1"),
            bundle.blobs[
                f"{n.state_container}/{Names.instance_blob('web', 'web-0')}"
            ].get_secret_value(),
        ).upload_blob(b"{}", overwrite=True),
        "read run records": lambda: (
            blob(
                n.state_container,
                "runs/x.json",
                bundle.blobs[
                    f"{n.state_container}/{Names.baseline_blob('web')}"
                ].get_secret_value(),
            )
            .download_blob()
            .readall()
        ),
    }
    storage.put_blob(n.logs_container, "someone/else.log", b"theirs")
    logs_token = bundle.containers[n.logs_container].get_secret_value()
    refusals["overwrite another's log"] = lambda: blob(
        n.logs_container, "someone/else.log", logs_token
    ).upload_blob(b"mine", overwrite=True)
    for what, attempt in refusals.items():
        with pytest.raises(HttpResponseError) as e:
            attempt()
        assert e.value.status_code == 403, what
    # and what it may do, it can
    blob(n.logs_container, "web-0/new.log", logs_token).upload_blob(b"ok")
    assert storage.get_blob(n.logs_container, "someone/else.log").data == b"theirs"
