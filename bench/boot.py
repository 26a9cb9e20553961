"""Benchmark 4: boot to configured, and what the worker's start-up spends on imports.

An instance reimaged into an existing deployment: the namespace, its queues and a 5-step
baseline of trivial scripts already exist. The clock starts when ``rolecall worker`` is
spawned and stops when the events queue holds the 5 step completions (the baseline is applied
*and* reported; the instance record, written just before, is checked to show the version).
The step completions' own ``finished_at`` gives the moment the last step was applied, on the
same host clock, without the 20 ms polling of the events queue.

Each repetition uses a fresh namespace and state directory (a new incarnation runs every step);
one untimed run first warms the interpreter's bytecode cache, as a baked image would have it.
"""

from __future__ import annotations

import time

import yaml

from bench import importcost
from bench.core import Sandbox, Section, Size, median, sandbox
from rolecall.controller.baselines import publish_baseline
from rolecall.devtools.reports import read_reports
from rolecall.devtools.waiting import wait_for
from rolecall.schemas import Completion, InstanceRecord, decode_document
from rolecall.schemas.errors import NotFound
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage

ROLE = "boot"
STEPS = 5


def prepare(box: Sandbox, instance: str) -> tuple[str, Storage]:
    """A namespace with its queues, and a published baseline of STEPS trivial steps."""
    ns = box.namespace()
    st = box.storage(ns)
    st.ensure_containers()
    n = st.names
    st.ensure_container(n.results_container(ROLE))
    for q in (n.instance_queue(instance), n.role_queue(ROLE)):
        st.ensure_queue(q)
        st.ensure_queue(n.poison_queue(q))
    d = box.root / "baseline"
    d.mkdir(exist_ok=True)
    spec = []
    for i in range(STEPS):
        # distinct bytes: steps are remembered by fingerprint, so identical ones would run once
        (d / f"step{i}.sh").write_text(f"#!/bin/sh\n# step {i}\nexit 0\n")
        spec.append({"name": f"step {i}", "script": f"step{i}.sh"})
    (d / "baseline.yaml").write_text(yaml.safe_dump({"steps": spec}))
    publish_baseline(st, ROLE, d / "baseline.yaml", notify=False)
    return ns, st


def reported_steps(st: Storage, instance: str) -> list[Completion]:
    out = []
    for batch in read_reports(st, take=False):
        out += [
            e
            for e in batch.events
            if isinstance(e, Completion) and e.instance == instance and e.baseline_version == 1
        ]
    return out if len({c.step for c in out if c.outcome.ok}) >= STEPS else []


def boot_once(box: Sandbox, instance: str) -> tuple[float, float]:
    """(seconds to the last step applied, seconds to all steps reported)."""
    ns, st = prepare(box, instance)
    wall0, t0 = time.time(), time.monotonic()
    proc = box.worker(ns, ROLE, instance)
    steps = wait_for(lambda: reported_steps(st, instance), 60, 0.02, "the baseline's report")
    reported = time.monotonic() - t0
    applied = max(c.finished_at.timestamp() for c in steps) - wall0
    box.procs.stop(proc)
    try:
        meta = st.get_blob(st.names.state_container, Names.instance_blob(ROLE, instance))
    except NotFound as e:
        raise RuntimeError("the instance record is missing") from e
    if decode_document(meta.data, InstanceRecord).baseline_version != 1:
        raise RuntimeError("the instance record does not show baseline v1")
    return applied, reported


def run(size: Size) -> Section:
    reps = size.pick(5, 1)
    sec = Section("boot", "4. Boot to configured (5-step baseline)")
    with sandbox("boot") as box:
        boot_once(box, "warmup")
        results = [boot_once(box, f"boot-{i}") for i in range(reps)]
        ns, _ = prepare(box, "imports")
        args = ["worker", "--role", ROLE, "--instance", "imports", "--once"]
        args += ["--state-dir", str(box.root / "disks" / "imports")]
        cost = importcost.measure(args, box.env(ns))
    applied = [a for a, _ in results]
    reported = [r for _, r in results]
    sec.context["repetitions"] = f"{reps} (after one untimed warm-up)"
    sec.add("reported_median_s", "process start to baseline applied and reported, median",
            median(reported), "s", target=("<=", 1.5))  # fmt: skip
    sec.add("reported_max_s", "process start to baseline applied and reported, max",
            max(reported), "s")  # fmt: skip
    sec.add("applied_median_s", "process start to last step finished, median",
            median(applied), "s")  # fmt: skip
    sec.add("import_ms", "imports on the start path (-X importtime, self times summed)",
            cost.total_us / 1000, "ms")  # fmt: skip
    sec.tables.append(
        "| run | applied (s) | reported (s) |\n|---:|---:|---:|\n"
        + "\n".join(f"| {i} | {a:.3f} | {r:.3f} |" for i, (a, r) in enumerate(results))
    )
    sec.tables.append(importcost.table(cost))
    sec.notes.append(
        "Most of a boot is the interpreter starting and importing (the table above; "
        "-X importtime itself inflates those figures); the storage work of a boot is about "
        "twenty calls made one after another (8 provisioning checks, registration, hello, "
        "the baseline, a payload read and a completion per step, the heartbeat) and each "
        "step is one fork/exec of a trivial script."
    )
    return sec
