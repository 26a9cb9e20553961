"""Bounded by what a job does (issue 15, findings 6, 8, 9): the agent's memory, its log blobs
and its secrets, each proven against Azurite with a worker's own SAS bundle."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from rolecall.controller.fold import EventFolder
from rolecall.controller.sas import issue_worker_sas
from rolecall.schemas import Outcome
from rolecall.schemas.access import SasBundle
from rolecall.schemas.base import LOG_MAX_BYTES
from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.names import Names
from rolecall.schemas.sealing import Unsealable, open_values, public_document, seal_values
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from tests.fleet import Fleet, Ledger, Operator, Worker, cli, cli_json, wait_for

MiB = 1024 * 1024
#: what the job of the memory test prints: more than the agent could ever hold
PRINTED = 500 * 1000 * 1000


def bundle_file(storage: Storage, tmp_path: Path, role: str, instance: str) -> Path:
    """The SAS bundle the operator issues for one instance, as a file on that instance."""
    sas_file = tmp_path / f"{instance}.sas.json"
    if not sas_file.exists():
        sas_file.write_bytes(encode_document(issue_worker_sas(storage, role, instance, hours=1)))
    return sas_file


@pytest.fixture
def own_sas(
    storage: Storage, workers: Fleet, env: dict[str, str], tmp_path: Path
) -> Callable[..., Worker]:
    """Start a worker holding only the SAS bundle the operator issues for it (and any
    setting given as ``ROLECALL_X=value``)."""

    def start(role: str, instance: str, **settings: str) -> Worker:
        workers.env = {k: v for k, v in env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
        workers.env["ROLECALL_SAS_FILE"] = str(bundle_file(storage, tmp_path, role, instance))
        workers.env.update(settings)
        return workers.worker(role, instance)

    return start


def compromised(storage: Storage, tmp_path: Path, role: str, instance: str) -> Storage:
    """What an attacker holding one instance can reach: its SAS bundle, nothing else."""
    sas_file = bundle_file(storage, tmp_path, role, instance)
    return Storage(StorageSettings(sas_file=sas_file, namespace=storage.names.namespace))


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


# --- finding 9: memory is bounded whatever a job prints ------------------------------------


def test_a_job_printing_500_mb_leaves_the_agent_under_100_mb(
    own_sas: Callable[..., Worker], ops: Operator, ledger: Ledger, storage: Storage
) -> None:
    """The agent once held a job's whole output, three times over (650 MB of RSS for 300 MB
    printed). Now the output is read back in pieces, and the log keeps its head and tail."""
    w = own_sas("web", "web-0")
    line = "chatty job output 0123456789 abcdefghijklmnopqrstuvwxyz"
    body = f'yes "{line}" | head -c {PRINTED}\necho "the last line"'
    ops.enqueue(ops.job("web", ops.publish(ledger.script("chatty", body)), timeout_s=280))
    done = wait_for(lambda: ops.completions("run1.any"), timeout=280, what="the chatty job")[0]
    assert w.proc is not None
    assert peak_rss(w.proc.pid) <= 100 * MiB
    assert done.outcome is Outcome.SUCCEEDED
    assert done.stdout_tail.endswith("the last line\n")
    assert done.log_cut_bytes and done.log_cut_bytes >= PRINTED - LOG_MAX_BYTES
    assert done.log_blob
    log = storage.get_blob(*Names.split_blob_address(done.log_blob)).data
    assert len(log) <= LOG_MAX_BYTES
    assert log.startswith(f"--- stdout ---\n{line}\n".encode())
    assert f"[rolecall: {done.log_cut_bytes:,} bytes cut here".encode() in log
    assert log.rstrip().endswith(b"the last line\n\n--- stderr ---")


# --- finding 8: logs can be neither squatted nor stuffed -----------------------------------


def test_a_log_name_planted_by_another_instance_does_not_keep_the_real_log_out(
    own_sas: Callable[..., Worker], storage: Storage, env: dict[str, str], tmp_path: Path
) -> None:
    """From inside a job web-0 learns the run id, which was all it needed to create web-1's
    log blob first: web-1's log was then never stored. Now the name has a random part."""
    web1 = own_sas("web", "web-1")
    wait_for(lambda: cli_json(env, "instances"), what="web-1 to register")
    web1.kill()
    script = tmp_path / "fails.sh"
    script.write_text('#!/bin/sh\nseq 1 3000\necho "the real log of $ROLECALL_INSTANCE"\nexit 1\n')
    r = cli(env, "run", "web", "--script", str(script), "--any", "--max-attempts", "1")
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.splitlines()[0]
    web0 = compromised(storage, tmp_path, "web", "web-0")
    logs = storage.names.logs_container
    for instance in ("web-1", "web-2"):  # every name the old scheme would give
        path = Names.log_blob(run_id, Names.job_id(run_id, "any"), instance, 1, None)
        web0.put_blob(logs, path, b"planted by web-0", create_only=True)
    web1.start()
    wait_for(lambda: cli_json(env, "status", run_id)["targets"][0]["state"] == "failed",
             timeout=60, what="web-1 to fail the job")  # fmt: skip
    shown = cli(env, "logs", run_id, "web-1")
    assert shown.returncode == 0, shown.stderr
    assert "the real log of web-1" in shown.stdout and "planted" not in shown.stdout


def test_a_stuffed_log_blob_is_not_served(
    storage: Storage, env: dict[str, str], tmp_path: Path
) -> None:
    """A worker's credential creates blobs of any size (a SAS cannot cap it): web-0 names a
    50 MB blob as its log in its own signed completion. The fold takes the completion; the
    controller checks the size before reading and serves nothing."""
    from tests.factories import register
    from tests.test_results_plane import Instance, batch, each_run, report

    register(storage, "web-0", role="web")
    sas_file = bundle_file(storage, tmp_path, "web", "web-0")
    web0 = Instance(decode_document(sas_file.read_bytes(), SasBundle))
    run = each_run(storage, tmp_path, "web")
    job_id = Names.job_id(run.run_id, "web-0")
    path = Names.log_blob(run.run_id, job_id, "web-0", 1, "0" * 32)
    logs = storage.names.logs_container
    hostile = compromised(storage, tmp_path, "web", "web-0")
    hostile.put_blob(logs, path, b"x" * (50 * 1000 * 1000), create_only=True)
    web0.post(storage.names.results_container("web"),
              batch("web-0", report(run, "web-0", "web",
                                    log_blob=Names.blob_address(logs, path))))  # fmt: skip
    EventFolder(storage).fold_all()
    assert cli_json(env, "status", run.run_id)["targets"][0]["log_blob"]
    shown = cli(env, "logs", run.run_id, "web-0")
    assert shown.returncode == 2
    assert shown.stderr.strip().splitlines() == [
        f"error: log {logs}/{path} is 50,000,000 bytes, more than any worker writes "
        f"({LOG_MAX_BYTES:,}); not shown"
    ]


# --- finding 6: secrets are sealed end to end and masked before any cut --------------------

SECRET = "hunter2-this-must-never-show"


def test_a_sealed_secret_shows_nowhere_but_in_the_jobs_environment(
    own_sas: Callable[..., Worker], storage: Storage, env: dict[str, str], tmp_path: Path
) -> None:
    """Secrets sat in clear in queue messages and run records, and a secret straddling the
    tail cut showed 19 of its characters. Now they are sealed to the role's key, opened only
    by its instances, and masked on the stream before any cut."""
    storage.ensure_queue(storage.names.role_queue("web"))  # as the deployment makes it
    key = tmp_path / "web.sealing.pem"
    made = cli(env, "keys", "seal-generate", "web", "--out", str(key))
    assert made.returncode == 0, made.stderr
    seen = tmp_path / "seen"
    script = tmp_path / "leaky.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s' \"$TOKEN\" | sha256sum | cut -d' ' -f1 > {seen}\n"
        "head -c 1048566 /dev/zero | tr '\\0' y\n"  # the secret straddles a 1 MiB read
        "printf '%s\\n' \"$TOKEN\"\n"
        "printf '%s' \"$TOKEN\"; head -c 2040 /dev/zero | tr '\\0' x; echo\n"  # and the tail cut
        'echo "again $TOKEN" >&2\nexit 1\n'
    )
    r = cli(env, "run", "web", "--script", str(script), "--any", "--max-attempts", "1",
            "--secret-env", f"TOKEN={SECRET}")  # fmt: skip
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.splitlines()[0]
    queued = storage.peek(storage.names.role_queue("web"))
    assert queued and all(SECRET not in m.content for m in queued)
    assert all(SECRET.encode() not in base64.b64decode(m.content) for m in queued)
    w = own_sas("web", "web-0", ROLECALL_SEALING_KEY=str(key))
    wait_for(lambda: cli_json(env, "status", run_id)["targets"][0]["state"] == "failed",
             timeout=60, what="the job to run and fail")  # fmt: skip
    assert seen.read_text().strip() == hashlib.sha256(SECRET.encode()).hexdigest()
    status = cli_json(env, "status", run_id)["targets"][0]
    assert status["stdout_tail"].endswith("x" * 2040 + "\n") and "***" in status["stdout_tail"]
    shown = cli(env, "logs", run_id, "any").stdout
    assert shown.count("***") == 3 and "again ***" in shown
    state = storage.names.state_container
    stored = [storage.get_blob(state, b.name).data for b in storage.list_blobs(state, "")]
    log = storage.get_blob(*Names.split_blob_address(status["log_blob"])).data
    for text in [*map(bytes.decode, [*stored, log]), json.dumps(status), shown, w.log(),
                 cli(env, "status", run_id).stdout, cli(env, "poison", "list", "-o", "json").stdout]:  # fmt: skip
        assert SECRET not in text
        assert SECRET[:8] not in text and SECRET[-8:] not in text, "not even a part"


def test_secrets_too_short_or_with_nowhere_to_be_sealed_are_refused_in_one_line(
    env: dict[str, str], tmp_path: Path, storage: Storage
) -> None:
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh\necho ok\n")
    storage.ensure_queue(storage.names.role_queue("web"))
    run = ("run", "web", "--script", str(script), "--any")
    short = cli(env, *run, "--secret-env", "PIN=1234", "--clear-secrets")
    unsealed = cli(env, *run, "--secret-env", f"TOKEN={SECRET}")
    assert (short.returncode, unsealed.returncode) == (2, 2)
    assert short.stderr.strip().splitlines() == [
        "error: secret PIN is shorter than 8 characters; a secret that short cannot be "
        "masked without blanking ordinary output"
    ]
    assert len(unsealed.stderr.strip().splitlines()) == 1
    assert "role 'web' has no sealing key" in unsealed.stderr
    clear = cli(env, *run, "--secret-env", f"TOKEN={SECRET}", "--clear-secrets")
    assert clear.returncode == 0, clear.stderr


def test_sealed_secrets_open_only_for_their_role_and_run(tmp_path: Path) -> None:
    """What a worker does with a sealed job it cannot open: refuses it (``unsealable``)."""
    web, db = X25519PrivateKey.generate(), X25519PrivateKey.generate()
    sealed = seal_values(public_document("web", web.public_key()), "web", "r1", {"T": SECRET})
    assert SECRET not in sealed.model_dump_json()
    assert open_values(web, sealed, "web", "r1") == {"T": SECRET}
    altered = sealed.model_copy(update={"ciphertext": base64.b64encode(b"x" * 64).decode()})
    for key, role, run_id, what in [(None, "web", "r1", sealed), (db, "web", "r1", sealed),
                                    (web, "db", "r1", sealed), (web, "web", "r2", sealed),
                                    (web, "web", "r1", altered)]:  # fmt: skip
        with pytest.raises(Unsealable):
            open_values(key, what, role, run_id)
