"""Benchmark 5: an ``--each`` run to 1,000 instances: dispatch, fold, status.

1,000 instances are registered the way a worker registers itself (its instance record with
the metadata ``--each`` lists, and its instance queue). Then:

* dispatch: ``controller.runs.start_run`` in this process (the controller's own time), and the
  operator's ``rolecall run ROLE --script s --each`` as a process (what a person waits for,
  Python start-up included);
* fold: 1,000 completions, each in its own events message as 1,000 workers would post them,
  folded by ``controller.fold.EventFolder``;
* status: loading the folded run record and rendering it as ``status -o json`` does, in this
  process; and ``rolecall status RUN -o json`` as a process.

Baselines, in the same run: the same number of same-sized messages sent to the same queues
with the bare SDK from 16 threads (the dispatcher's pool size), and the run record read with
the bare SDK and round-tripped through ``json``.

The controller's transactions are counted with ``storage.meter`` for each phase.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections import defaultdict
from datetime import timedelta

from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient

from bench.core import ROLECALL, TRUE_SH, Section, Size, parallel, ratio, sandbox, send_many
from bench.rc import register_instance
from rolecall.controller.dispatch import messages_for
from rolecall.controller.fold import EventFolder
from rolecall.controller.runs import RunRequest, start_run
from rolecall.controller.status import run_json
from rolecall.controller.store import RunStore
from rolecall.schemas import Completion, EventBatch, Outcome, encode_message, utcnow
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, TargetState
from rolecall.storage.clients import Message, Storage
from rolecall.storage.meter import Meter

ROLE = "fleet"


def completion(run_id: str, instance: str) -> Completion:
    now = utcnow()
    return Completion(
        job_id=Names.job_id(run_id, instance), run_id=run_id, role=ROLE, instance=instance,
        incarnation="bench", outcome=Outcome.SUCCEEDED, exit_code=0, attempt=1,
        started_at=now - timedelta(seconds=0.02), finished_at=now, duration_s=0.02,
        stdout_tail="ok\n",
    )  # fmt: skip


class DeleteClock:
    """Wall time spent in ``Storage.delete`` (summed over threads): how much of a fold is
    deleting the events messages it folded, a cost that on Azurite grows with its store."""

    def __init__(self, storage: Storage) -> None:
        self.storage, self.calls, self.seconds = storage, 0, 0.0
        self._lock = threading.Lock()
        inner = storage.delete

        def timed(msg: Message) -> bool:
            t = time.monotonic()
            try:
                return inner(msg)
            finally:
                with self._lock:
                    self.calls += 1
                    self.seconds += time.monotonic() - t

        storage.delete = timed  # type: ignore[method-assign]

    def stop(self) -> None:
        del self.storage.delete  # back to the class's method

    @property
    def mean_ms(self) -> float | None:
        return self.seconds / self.calls * 1000 if self.calls else None


def run(size: Size) -> Section:
    n = size.pick(1000, 20)
    sec = Section("fanout", f"5. Fan-out: `--each` to {n} instances")
    with sandbox("fanout") as box:
        ns = box.namespace()
        meter = Meter()
        st = box.storage(ns, meter)
        cs = box.az.connection_string
        st.ensure_containers()
        instances = [f"vm-{i:05d}" for i in range(n)]
        t = time.monotonic()
        parallel(lambda i: register_instance(st, ROLE, i, create_queue=True), instances)
        sec.context["registration"] = f"{n} records + queues in {time.monotonic() - t:.1f} s"
        script = box.root / "true.sh"
        script.write_bytes(TRUE_SH)
        meter.reset()

        t = time.monotonic()
        record = start_run(st, RunRequest(role=ROLE, script=script, mode=RunMode.EACH))
        dispatch_s = time.monotonic() - t
        dispatch_tx = meter.total
        queued = sum(1 for x in record.targets.values() if x.state is TargetState.QUEUED)
        if queued != n:
            raise RuntimeError(f"{queued} of {n} targets queued")
        sample = instances[:: max(1, n // 10)]
        if not all(st.peek(st.names.instance_queue(i), 1) for i in sample):
            raise RuntimeError("a sampled instance queue holds no job")

        # baseline: the same number of messages of the same size, sent to the same queues
        # with the bare SDK from the same 16 threads the dispatcher uses
        text = "x" * len(next(messages_for(record, instances[:1]))[1])
        clients = {i: QueueClient.from_connection_string(cs, st.names.instance_queue(i))
                   for i in instances}  # fmt: skip
        t = time.monotonic()
        parallel(lambda i: clients[i].send_message(text), instances)
        bare_send_s = time.monotonic() - t

        env = box.env(ns)
        t = time.monotonic()
        cli_run = subprocess.run(
            [ROLECALL, "run", ROLE, "--script", str(script), "--each", "-o", "json"],
            env=env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        dispatch_cli_s = time.monotonic() - t
        if len(json.loads(cli_run.stdout)["targets"]) != n:
            raise RuntimeError("the CLI run did not target every instance")

        # each instance posts its own completion to its role's results queue (its shard)
        by_queue: dict[str, list[str]] = defaultdict(list)
        for i in instances:
            batch = EventBatch(sender=i, events=[completion(record.run_id, i)])
            by_queue[st.names.results_queue_of(ROLE, i)].append(encode_message(batch))
        for queue, texts in by_queue.items():
            send_many(st, queue, texts)
        meter.reset()
        deletes = DeleteClock(st)
        t = time.monotonic()
        folded = EventFolder(st).fold_all()
        fold_s = time.monotonic() - t
        deletes.stop()
        fold_tx = meter.total
        fold_ops = meter.snapshot()
        if folded.completions != n:
            raise RuntimeError(f"folded {folded.completions} of {n} completions")

        store = RunStore(st)
        t = time.monotonic()
        final = store.get(record.run_id)
        rendered = json.dumps(run_json(final), indent=2, default=str)
        status_s = time.monotonic() - t
        if final.count("ok") != n:
            raise RuntimeError(f"{final.count('ok')} of {n} targets succeeded after the fold")
        blob = BlobClient.from_connection_string(
            cs, st.names.state_container, Names.run_blob(record.run_id)
        )
        t = time.monotonic()
        raw = blob.download_blob().readall()
        json.dumps(json.loads(raw), indent=2)
        bare_status_s = time.monotonic() - t
        size_kb = len(raw)

        t = time.monotonic()
        subprocess.run(
            [ROLECALL, "status", record.run_id, "-o", "json"],
            env=env, capture_output=True, text=True, timeout=300, check=True,
        )  # fmt: skip
        status_cli_s = time.monotonic() - t

    sec.context.update(
        run_record=f"{size_kb / 1000:.0f} kB stored, {len(rendered) / 1000:.0f} kB of status JSON",
        fold=f"{folded.messages} events messages, {fold_tx} transactions "
        f"({fold_tx / n:.2f} per target): "
        + ", ".join(f"{op} {k}" for op, k in sorted(fold_ops.items())),
        dispatch=f"{dispatch_tx} transactions ({dispatch_tx / n:.3f} per target)",
    )
    sec.add("dispatch_s", "dispatch: start_run in-process", dispatch_s, "s", target=("<=", 5))
    sec.add("dispatch_cli_s", "dispatch: `rolecall run --each` process, wall", dispatch_cli_s,
            "s", target=("<=", 5))  # fmt: skip
    sec.add("bare_send_s", f"baseline: {n} sends, bare SDK, 16 threads", bare_send_s, "s")
    sec.add("dispatch_vs_bare", "dispatch in-process / bare sends", ratio(dispatch_s, bare_send_s),
            "x")  # fmt: skip
    sec.add("dispatch_tx_per_target", "dispatch transactions per target",
            dispatch_tx / n, "tx")  # fmt: skip
    share = deletes.seconds / 8 / fold_s if fold_s else 0.0
    sec.add("fold_s", f"fold {n} completions (EventFolder.fold_all)", fold_s, "s")
    sec.add("fold_tx_per_target", "fold transactions per target", fold_tx / n, "tx")
    sec.add("fold_delete_ms", "fold: one events-message delete, mean wall (8 in parallel)",
            deletes.mean_ms, "ms")  # fmt: skip
    sec.add("fold_delete_share", "fold: delete wall summed over threads / 8 / fold wall",
            share, "x")  # fmt: skip
    sec.add("status_s", "status once folded: load record + render JSON, in-process", status_s,
            "s", target=("<=", 1))  # fmt: skip
    sec.add("bare_status_s", "baseline: bare blob read + JSON parse + dump of the record",
            bare_status_s, "s")  # fmt: skip
    sec.add("status_cli_s", "`rolecall status RUN -o json` process, wall", status_cli_s, "s")
    sec.notes += [
        f"Dispatch: {(dispatch_s - bare_send_s) / n * 1000:.1f} ms a target beyond the bare "
        "sends. start_run lists the instances, publishes the payload, builds, encodes (and "
        "signs, with a key) each target's envelope in the same 16 threads that send, sharing "
        f"one interpreter lock, and writes the {size_kb / 1000:.0f} kB run record. Both it and "
        "the bare sends are bound by this machine's CPU (about 4 ms of client CPU per SDK "
        "call, see the throughput probe, plus Azurite's own), not by storage latency.",
        f"Fold: {fold_s / folded.messages * 1000:.0f} ms an events message. Each round "
        "claims 32 messages, rewrites the run record once, then deletes the 32 messages, 8 "
        f"at a time; the deletes take about {share:.0%} of the time. Azurite's delete slows as "
        "its store grows (the throughput section's probe: shallow against deep queue), and "
        "here it holds "
        f"{n} instance queues with their jobs. With one completion per events message, as "
        f"{n} single-job workers post them, `rolecall status` and `wait` (which fold before "
        "they answer) wait for this once.",
    ]
    return sec
