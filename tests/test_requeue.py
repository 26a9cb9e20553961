"""Poison requeue trusts nothing a worker wrote (issue 15, finding 4).

Every instance of a role may send to the role's poison queue, so a compromised one can plant
records there: its own code, an altered job, a copy of a signed job that already ran, a
replay refused once already. ``rolecall poison requeue`` sends back only jobs this controller
signed, addressed to that queue and not done, re-stamped and re-signed; it reports the rest.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from rolecall.schemas import JobEnvelope, Outcome, decode_message, encode_message, utcnow
from rolecall.schemas.records import PoisonRecord
from tests.conftest import OperatorKey
from tests.fleet import Fleet, Ledger, Operator, cli, wait_for
from tests.test_replay import script, stolen


def planted(queue: str, original: str, reason: str = "timed_out") -> str:
    """A poison record as web-0 writes it with its own credential."""
    return encode_message(PoisonRecord(
        source_queue=queue, reason=reason, error="it looked stuck", original=original,
        message_id="m", dequeue_count=1, instance="web-0", poisoned_at=utcnow(),
    ))  # fmt: skip


def altered(original: str) -> str:
    """A genuine signed job with one field changed and its signature kept."""
    data = json.loads(base64.b64decode(original))
    data["execution"]["args"] = ["--also-this"]
    return base64.b64encode(json.dumps(data).encode()).decode()


def test_requeue_sends_only_jobs_the_controller_signed_freshly_signed(
    ops: Operator, ledger: Ledger, workers: Fleet, env: dict[str, str], tmp_path: Path,
    operator_key: OperatorKey,
) -> None:  # fmt: skip
    role_q = ops.names.role_queue("web")
    poison_q = ops.names.poison_queue(role_q)
    ops.storage.ensure_queue(role_q)
    # a genuine poisoning: the job's one attempt went to an instance that died with it
    r = cli(env, "run", "web", "--script", str(script(tmp_path, ledger, "genuine")), "--any",
            "--max-attempts", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    [died] = ops.storage.receive(role_q, max_messages=1, visibility_s=3)
    r = cli(env, "run", "web", "--script", str(script(tmp_path, ledger, "done")), "--any")
    done_run = r.stdout.strip()
    [done] = [m for m in ops.storage.peek(role_q) if m.id != died.id]  # web-0 keeps a copy
    workers.worker("web", "web-1")
    wait_for(lambda: ops.poison(role_q), timeout=60, what="the died job to be poisoned")
    assert cli(env, "wait", done_run, "--timeout", "60").returncode == 0
    [genuine] = ops.poison(role_q)
    assert genuine.reason == "attempts_exhausted" and ledger.entries("genuine") == []

    web0 = stolen(ops.storage, tmp_path, "web", "web-0")
    own = ops.job("web", ops.publish(ledger.script("planted")), run_id="planted")
    for original, reason in [
        (encode_message(own), "timed_out"),  # its own code, unsigned
        (altered(done.content), "timed_out"),  # a signed job, changed
        (done.content, "timed_out"),  # a copy of a signed job that already ran
        (died.content, "replayed"),  # a replay, refused once already
    ]:
        web0.send(poison_q, planted(role_q, original, reason))

    r = cli(env, "poison", "requeue", "--all", "--queue", poison_q)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.strip() == f"requeued 1 message from {poison_q}; refused 4, left in the queue"
    refused = r.stderr.splitlines()
    assert len(refused) == 4 and all(line.startswith("refused ") for line in refused), refused
    said = "\n".join(refused)
    for why in ("unsigned: not a job this controller signed",
                "signature does not match: forged or altered",
                f"already succeeded in run {done_run}", "refused as replayed"):  # fmt: skip
        assert why in said, said

    wait_for(lambda: ledger.entries("genuine"), timeout=60, what="the genuine job to run")
    wait_for(lambda: ops.completions(outcome=Outcome.SUCCEEDED, run_id=genuine.run_id),
             timeout=60, what="its completion")  # fmt: skip
    assert ledger.entries("planted") == [] and len(ledger.entries("done")) == 1
    assert sorted(p.reason for p in ops.poison(role_q)) == [
        "replayed",
        "timed_out",
        "timed_out",
        "timed_out",
    ]


def test_a_requeued_job_is_stamped_and_signed_afresh(
    ops: Operator, env: dict[str, str], operator_key: OperatorKey
) -> None:
    """The job goes back with a new send time and signature (an old one is refused as
    ``replayed`` by every agent of contract 1.4), everything else as signed at first."""
    role_q = ops.names.role_queue("web")
    poison_q = ops.names.poison_queue(role_q)
    ops.storage.ensure_queue(role_q)
    first = ops.signed(
        ops.job("web", None, action="reconcile", sent_at=utcnow().replace(year=2025))
    )
    ops.send_raw(poison_q, planted(role_q, first, "attempts_exhausted"))
    r = cli(env, "poison", "requeue", "--all", "--queue", poison_q)
    assert r.returncode == 0, r.stdout + r.stderr
    [msg] = ops.storage.peek(role_q)
    before, after = decode_message(first, JobEnvelope), decode_message(msg.content, JobEnvelope)
    assert msg.inserted_on and after.sent_at
    assert abs((msg.inserted_on - after.sent_at).total_seconds()) < 120
    assert after.signature and after.signature != before.signature
    same = {"sent_at", "signature"}
    assert after.model_dump(exclude=same) == before.model_dump(exclude=same)
