"""Running a simulation: fleet, controller, job mix and faults, then convergence."""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from rolecall.controller.baselines import publish_baseline
from rolecall.controller.config import ControllerSettings
from rolecall.controller.fleet import list_instances
from rolecall.controller.fold import EventFolder
from rolecall.controller.runs import RunRequest, start_run
from rolecall.controller.store import RunStore
from rolecall.devtools.azurite import Azurite, connection_string
from rolecall.devtools.faultproxy import FaultPlan, FaultProxy
from rolecall.devtools.keys import local_keys
from rolecall.devtools.localfleet import LocalFleet
from rolecall.devtools.sim.config import SimConfig
from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import RolecallError, StorageError
from rolecall.schemas.runs import RunMode
from rolecall.storage.clients import Storage

LEDGER_SCRIPT = """#!/bin/sh
R="$ROLECALL_JOB_ID $ROLECALL_INSTANCE $ROLECALL_INCARNATION $ROLECALL_ATTEMPT"
echo "$R $(date +%s.%N)" >> "$LEDGER"
sleep "${SLEEP:-0}"
exit "${EXIT:-0}"
"""


@dataclass
class Event:
    at: float  # wall clock, comparable with the ledger's timestamps
    kind: str  # reimage | kill | azurite_restart
    instance: str = ""


@dataclass
class SimState:
    """Everything the invariant checks need besides storage and the ledger."""

    root: Path
    storage: Storage
    fleet: LocalFleet
    baseline_versions: dict[str, int] = field(default_factory=dict)
    failing_runs: set[str] = field(default_factory=set)
    malformed_ids: set[str] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    plan: FaultPlan = field(default_factory=FaultPlan)
    converged: bool = False
    report: Any = None
    elapsed_s: float = 0.0
    enqueue_errors: int = 0
    mid_job_reimages: int = 0

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.txt"


class Simulation:
    def __init__(self, cfg: SimConfig, root: Path, console: Console | None = None) -> None:
        self.cfg = cfg
        self.root = root
        self.console = console or Console(quiet=True)
        self.rnd = random.Random(cfg.seed)  # noqa: S311 - a schedule, not a secret
        self.stop_chaos = threading.Event()
        self.stop_controller = threading.Event()

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.t0:6.1f}s[/] {text}")

    def run(self) -> SimState:
        self.t0 = time.monotonic()
        with ExitStack() as stack:
            state = self._setup(stack)
            self._boot(state)
            threads = [
                threading.Thread(target=self._controller, args=(state,), daemon=True),
                threading.Thread(target=self._chaos, args=(state, stack), daemon=True),
            ]
            # unwinding (Ctrl+C, SIGTERM) stops the actors before the fleet: a reimage the
            # chaos thread finished after the fleet stopped would leave a worker running.
            # Registered before they start: a SIGTERM right after boot lands between the two.
            stack.callback(self._stop_actors, threads)
            for t in threads:
                t.start()
            self._enqueue(state)
            self.stop_chaos.set()
            threads[1].join()
            state.converged = self._converge(state)
            self.stop_controller.set()
            threads[0].join()
            state.fleet.stop()
            EventFolder(state.storage).fold_all()
            state.elapsed_s = time.monotonic() - self.t0
            from rolecall.devtools.sim.invariants import check

            state.report = check(state)
            return state

    def _stop_actors(self, threads: list[threading.Thread]) -> None:
        self.stop_chaos.set()
        self.stop_controller.set()
        for t in threads:
            if t.ident is not None:  # started
                t.join(timeout=60)

    # --- set-up ----------------------------------------------------------------------------

    def _setup(self, stack: ExitStack) -> SimState:
        self.root.mkdir(parents=True, exist_ok=True)
        self.azurite = Azurite(self.root / "azurite-data").start()
        stack.callback(self.azurite.stop)
        plan = FaultPlan(rate=self.cfg.fault_rate, seed=self.cfg.seed)
        blob = stack.enter_context(FaultProxy(self.azurite.blob_port, plan))
        queue = stack.enter_context(FaultProxy(self.azurite.queue_port, plan))
        namespace = "sim" + secrets.token_hex(3)
        storage = Storage(
            ControllerSettings(
                connection_string=self.azurite.connection_string, namespace=namespace
            )
        )
        storage.ensure_containers()
        storage.ensure_queue(storage.names.events_queue)
        acct = self.azurite.blob_url.rsplit("/", 1)[1]
        faulty = connection_string(
            f"http://127.0.0.1:{blob.port}/{acct}", f"http://127.0.0.1:{queue.port}/{acct}"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLECALL_", "AZURE_"))}
        env |= {
            "AZURE_STORAGE_CONNECTION_STRING": faulty,
            "ROLECALL_NAMESPACE": namespace,
            "ROLECALL_BOOT_JITTER_S": "0",
            "ROLECALL_RETRY_DELAY_S": "1",
            "ROLECALL_BASELINE_RETRY_S": "3",
            "ROLECALL_REQUEST_TIMEOUT_S": "10",
        }
        self.keys = local_keys(self.root)  # signed end to end, as a real fleet
        env |= self.keys.worker_env()
        args = ["--lease", str(self.cfg.lease_s), "--poll-max", "0.5", "--heartbeat", "5",
                "--grace", "2"]  # fmt: skip
        fleet = stack.enter_context(LocalFleet(self.root, env, args))
        state = SimState(root=self.root, storage=storage, fleet=fleet, plan=plan)
        state.ledger.touch()
        self.script = self.root / "ledger.sh"
        self.script.write_text(LEDGER_SCRIPT)
        self.say(f"Azurite on disk at {self.root / 'azurite-data'}; workers go through a proxy "
                 f"injecting faults into {self.cfg.fault_rate:.0%} of requests")  # fmt: skip
        return state

    def _publish_baseline(self, state: SimState, role: str, version: int) -> None:
        spec = {"steps": [
            {"name": f"step {i}", "script": "ledger.sh",
             "env": {"LEDGER": str(state.ledger), "STEP": str(i), "VERSION": str(version)}}
            for i in range(self.cfg.baseline_steps)
        ]}  # fmt: skip
        path = self.root / f"baseline-{role}.json"
        path.write_text(json.dumps(spec))
        b, _ = publish_baseline(state.storage, role, path, issuer="sim", signer=self.keys.signer)
        state.baseline_versions[role] = b.version

    def _boot(self, state: SimState) -> None:
        for role in self.cfg.role_names:
            self._publish_baseline(state, role, 1)
        older = [self.cfg.older_agent] if self.cfg.older_agent else None
        for i, (role, name) in enumerate(self.cfg.instance_names()):
            state.fleet.add(role, name, command=older if i % 2 else None)
        deadline = time.monotonic() + 120
        while len(list_instances(state.storage)) < self.cfg.instances:
            if time.monotonic() > deadline:
                raise RolecallError("instances did not register within 120 s")
            time.sleep(0.2)
        versions = sorted({s.agent_version for s in list_instances(state.storage)})
        self.say(f"{self.cfg.instances} instances over {self.cfg.roles} roles registered "
                 f"(agents {', '.join(versions)})")  # fmt: skip

    # --- the three actors --------------------------------------------------------------------

    def _controller(self, state: SimState) -> None:
        """Fold events and sweep for undispatched runs, as `rolecall controller` does."""
        folder = EventFolder(state.storage)
        next_sweep = 0.0
        while not self.stop_controller.is_set():
            try:
                if time.monotonic() >= next_sweep:
                    folder.sweep()
                    next_sweep = time.monotonic() + 2.0
                if not folder.fold_once().messages:
                    self.stop_controller.wait(0.2)
            except RolecallError:
                self.stop_controller.wait(0.5)

    def _chaos(self, state: SimState, stack: ExitStack) -> None:
        cfg = self.cfg
        next_reimage = time.monotonic() + (cfg.reimage_every_s or float("inf"))
        next_kill = time.monotonic() + (cfg.kill_every_s or float("inf"))
        restarts = [time.monotonic() + cfg.enqueue_s * (i + 1) / (cfg.azurite_restarts + 1)
                    for i in range(cfg.azurite_restarts)]  # fmt: skip
        while not self.stop_chaos.wait(0.1):
            now = time.monotonic()
            if now >= next_reimage:
                self._fault(state, "reimage")
                next_reimage = now + cfg.reimage_every_s
            if now >= next_kill:
                self._fault(state, "kill")
                next_kill = now + cfg.kill_every_s
            if restarts and now >= restarts[0]:
                restarts.pop(0)
                state.events.append(Event(time.time(), "azurite_restart"))
                self.say("[yellow]graceful Azurite restart[/] (SIGTERM, start on the same disk)")
                self.azurite.restart()

    def _fault(self, state: SimState, kind: str) -> None:
        """Reimages hit the instance that most recently started a job (mid-job, usually);
        plain kills hit anyone."""
        instances = list(state.fleet.instances.values())
        inst = self.rnd.choice(instances)
        busy = _last_started(state.ledger)
        if kind == "reimage" and busy is not None and busy[0] in state.fleet.instances:
            inst = state.fleet.instances[busy[0]]
            if time.time() - busy[1] < self.cfg.job_sleep_max_s / 2:
                state.mid_job_reimages += 1
        if kind == "reimage":
            inst.reimage(restart=False)
        else:
            inst.kill()
        # stamped once the instance is dead: every effect of what ran there is earlier
        state.events.append(Event(time.time(), kind, inst.instance))
        inst.start()
        self.say(f"[red]{kind}[/] {inst.instance}")

    def _enqueue(self, state: SimState) -> None:
        cfg = self.cfg
        plan: list[tuple[str, str]] = [("any", r) for r in self._spread(cfg.jobs)]
        plan += [("each", r) for r in self._spread(cfg.each_runs)]
        plan += [("failing", r) for r in self._spread(cfg.failing)]
        plan += [("malformed", r) for r in self._spread(cfg.malformed)]
        self.rnd.shuffle(plan)
        if cfg.baseline_change and cfg.baseline_steps:
            plan.insert(len(plan) // 2, ("baseline", cfg.role_names[0]))
        interval = cfg.enqueue_s / max(1, len(plan))
        for i, (kind, role) in enumerate(plan):
            target = self.t0 + (time.monotonic() - self.t0) + interval
            self._submit(state, kind, role)
            if i % 100 == 99:
                self.say(f"enqueued {i + 1}/{len(plan)}")
            time.sleep(max(0.0, target - time.monotonic()))
        self.say(f"enqueued {len(plan)} items")

    def _spread(self, n: int) -> list[str]:
        return [self.cfg.role_names[i % self.cfg.roles] for i in range(n)]

    def _submit(self, state: SimState, kind: str, role: str) -> None:
        for _ in range(10):
            try:
                self._submit_once(state, kind, role)
                return
            except StorageError:
                state.enqueue_errors += 1
                time.sleep(1.0)  # the controller waits out an Azurite restart
        raise RolecallError(f"could not enqueue a {kind} item for {role}")

    def _submit_once(self, state: SimState, kind: str, role: str) -> None:
        if kind == "baseline":
            self._publish_baseline(state, role, state.baseline_versions[role] + 1)
            self.say(f"published baseline {role} v{state.baseline_versions[role]}")
            return
        if kind == "malformed":
            bad = secrets.token_hex(6)
            body = base64.b64encode(json.dumps({"sim_bad": bad}).encode()).decode()
            state.storage.send(state.storage.names.role_queue(role), body)
            state.malformed_ids.add(bad)  # only once sent: a failed send is retried anew
            return
        env = {"LEDGER": str(state.ledger),
               "SLEEP": f"{self.rnd.uniform(0, self.cfg.job_sleep_max_s):.2f}"}  # fmt: skip
        if kind == "failing":
            env["EXIT"] = "1"
        run = start_run(state.storage, RunRequest(
            role=role, script=self.script, mode=RunMode.EACH if kind == "each" else RunMode.ANY,
            env=env, timeout_s=60, issuer="sim",
            max_attempts=2 if kind == "failing" else self.cfg.max_attempts,
        ), signer=self.keys.signer)  # fmt: skip
        if kind == "failing":
            state.failing_runs.add(run.run_id)

    def _converge(self, state: SimState) -> bool:
        self.say("waiting for every run to finish and every instance to converge")
        store = RunStore(state.storage)
        deadline = time.monotonic() + self.cfg.converge_timeout_s
        while time.monotonic() < deadline:
            try:
                if self._settled(state, store):
                    self.say("[green]converged[/]")
                    return True
            except StorageError:
                pass
            time.sleep(1.0)
        self.say("[red]did not converge[/]")
        return False

    def _settled(self, state: SimState, store: RunStore) -> bool:
        runs = [store.get(r) for r in store.list_ids()]
        if any(not t.state.terminal for r in runs if r.mode is not RunMode.BASELINE
               for t in r.targets.values()):  # fmt: skip
            return False
        now = utcnow()
        for s in list_instances(state.storage):
            role = next(r for r in state.baseline_versions if s.role_key == r)
            inst = state.fleet.instances[s.instance]
            if not (s.live(now) and s.state == "ready" and s.incarnation == inst.incarnation
                    and s.baseline_version == state.baseline_versions[role]):  # fmt: skip
                return False
        return True


def _last_started(ledger: Path) -> tuple[str, float] | None:
    """(instance, time) of the newest ledger line that is a queued job, not a baseline step."""
    with ledger.open("rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 4096))
        lines = f.read().decode(errors="replace").splitlines()[1:]
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 5 and not parts[0].startswith("baseline-"):
            return parts[1], float(parts[4])
    return None
