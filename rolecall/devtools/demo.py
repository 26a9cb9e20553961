"""``rolecall demo``: a small fleet configures itself, gets reconfigured, loses an instance
mid-job to a reimage, and converges with nothing lost, on a local Azurite.

Everything here is real: Azurite (the pinned npm package), worker processes with their own
state directories, the controller library the CLI uses. Only the machines are pretend.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from rolecall.controller.baselines import publish_baseline
from rolecall.controller.config import ControllerSettings
from rolecall.controller.fleet import InstanceSummary, list_instances
from rolecall.controller.fold import EventFolder
from rolecall.controller.runs import RunRequest, start_run
from rolecall.controller.status import run_table
from rolecall.controller.store import RunStore
from rolecall.devtools.azurite import Azurite
from rolecall.devtools.keys import local_keys
from rolecall.devtools.localfleet import LocalFleet
from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.runs import RunMode, RunRecord, RunState
from rolecall.storage.clients import Storage

ROLES = {"web": 3, "api": 3}
#: where the demo serves the dashboard: a free loopback port (the address is printed)
DASHBOARD = "127.0.0.1:0"
WORKER_ARGS = ["--lease", "6", "--poll-max", "0.5", "--heartbeat", "2", "--grace", "5"]


def examples_dir() -> Path:
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (base / "examples" / "web" / "baseline.yaml").is_file():
            return base / "examples"
    raise ConfigError("the demo needs the examples/ folder of a rolecall checkout")


class Demo:
    def __init__(
        self, console: Console, connection_string: str | None, http: str | None = DASHBOARD
    ) -> None:
        self.console = console
        self.connection_string = connection_string
        self.http = http
        self.dashboard: str | None = None
        self.stack = ExitStack()
        self.t0 = time.monotonic()
        self.reimaged: list[str] = []

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.monotonic() - self.t0:5.1f}s[/] {text}")

    def run(self, *, stay: bool = False) -> int:
        with self.stack:
            self._setup()
            self._boot_fleet()
            each, anyjob = self._reconfigure()
            self._reimage_mid_job(each)
            runs = self._converge([each.run_id, anyjob.run_id])
            self._summary(runs)
            if stay and self.dashboard:
                self._stay()
            return 0 if all(r.state is RunState.SUCCEEDED for r in runs) else 1

    def _stay(self) -> None:
        self.say(f"the dashboard stays up at [bold]{self.dashboard}[/]; Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()

    # --- steps ---------------------------------------------------------------------------

    def _setup(self) -> None:
        cs = self.connection_string
        if cs is None:
            self.say("starting a local Azurite (the pinned npm package) on free loopback ports")
            az = self.stack.enter_context(Azurite())
            cs = az.connection_string
        namespace = "demo" + secrets.token_hex(3)
        self.settings = ControllerSettings(connection_string=cs, namespace=namespace)
        self.storage = Storage(self.settings)
        self.storage.ensure_containers()
        self.storage.ensure_queue(self.storage.names.events_queue)
        self.folder = EventFolder(self.storage)
        self.root = Path(
            self.stack.enter_context(tempfile.TemporaryDirectory(prefix="rolecall-demo-"))
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLECALL_", "AZURE_"))}
        env |= {
            "AZURE_STORAGE_CONNECTION_STRING": cs,
            "ROLECALL_NAMESPACE": namespace,
            "ROLECALL_BOOT_JITTER_S": "0",
        }
        self.keys = local_keys(self.root)  # the demo signs everything, as a fleet must
        env |= self.keys.worker_env()
        self.fleet = self.stack.enter_context(LocalFleet(self.root, env, WORKER_ARGS))
        self.say(f"namespace [bold]{namespace}[/]; instance disks under {self.root}")
        if self.http:
            self._serve_dashboard(self.http)

    def _serve_dashboard(self, http: str) -> None:
        """The controller's dashboard (controller/web/) beside the demo, so a newcomer can
        watch the fleet configure itself in a browser; without the web extra, say so."""
        from rolecall.controller.web.server import check, parse_address, serving
        from rolecall.controller.web.state import Components

        try:
            address = parse_address(http)
            check(address, None)
        except ConfigError as e:
            self.say(f"[yellow]no dashboard[/]: {escape(e.message)}")
            return
        components = Components(meters={"demo": self.storage.meter})
        self.dashboard = self.stack.enter_context(
            serving(self.settings, address, None, components, ttl_s=1.0)
        )
        self.say(f"dashboard at [bold]{self.dashboard}[/] (open it to watch; metrics at "
                 f"{self.dashboard}metrics)")  # fmt: skip

    def _boot_fleet(self) -> None:
        examples = examples_dir()
        for role in ROLES:
            b, _ = publish_baseline(
                self.storage,
                role,
                examples / role / "baseline.yaml",
                notify=False,
                signer=self.keys.signer,
            )
            self.say(f"published baseline [bold]{role}[/] v{b.version}: "
                     + ", ".join(s.name for s in b.steps))  # fmt: skip
        self.say(f"booting {sum(ROLES.values())} instances from the bare base image")
        for role, n in ROLES.items():
            for i in range(n):
                self.fleet.add(role, f"{role}-{i}")
        self._watch("instances configure themselves at boot", self._all_configured, timeout=60)

    def _reconfigure(self) -> tuple[RunRecord, RunRecord]:
        examples = examples_dir()
        each = start_run(self.storage, RunRequest(
            role="web", script=examples / "web" / "rotate-certs.sh", mode=RunMode.EACH,
            env={"ROTATE_SECONDS": "3"}, timeout_s=60, issuer="demo",
        ), signer=self.keys.signer)  # fmt: skip
        self.say(f"run [bold]{each.run_id}[/]: rotate-certs.sh --each on web "
                 f"({len(each.targets)} instances)")  # fmt: skip
        anyjob = start_run(self.storage, RunRequest(
            role="api", script=examples / "api" / "warm-cache.sh", mode=RunMode.ANY, issuer="demo",
        ), signer=self.keys.signer)  # fmt: skip
        self.say(f"run [bold]{anyjob.run_id}[/]: warm-cache.sh --any on api (one of three)")
        return each, anyjob

    def _reimage_mid_job(self, run: RunRecord) -> None:
        victim = "web-1"
        queue = self.storage.names.instance_queue(victim)

        def claimed() -> bool:
            # claimed = on the queue but invisible: the pop receipt is web-1's lease
            return not self.storage.peek(queue, 1) and self.storage.approximate_count(queue) > 0

        self._watch(f"{victim} claims its rotate-certs job", claimed, timeout=30)
        time.sleep(1.0)  # let it get properly into the job before the host "fails"
        inst = self.fleet.instances[victim]
        before = inst.incarnation
        inst.reimage()
        self.reimaged.append(victim)
        self.say(f"[red]reimaged {victim}[/] mid-job: SIGKILL, disk wiped, booted again "
                 f"(incarnation {before} → new)")  # fmt: skip

    def _converge(self, run_ids: list[str]) -> list[RunRecord]:
        store = RunStore(self.storage)

        def done() -> bool:
            self.folder.fold_all()
            return all(store.get(r).state is not RunState.RUNNING for r in run_ids) and (
                self._all_configured()
            )

        self._watch("runs converge (the reimaged instance reconfigures and finishes its job)",
                    done, timeout=90, runs=run_ids)  # fmt: skip
        runs = [store.get(r) for r in run_ids]
        for r in runs:
            self.console.print(run_table(r))
        return runs

    def _summary(self, runs: list[RunRecord]) -> None:
        self.fleet.stop()
        worker_tx = 0
        for f in (self.root / "stats").glob("*.json"):
            worker_tx += sum(json.loads(f.read_text()).values())
        targets = sum(len(r.targets) for r in runs)
        ok = sum(r.count("ok") for r in runs)
        baseline_runs = [RunStore(self.storage).get(f"baseline-{role}-v1") for role in ROLES]
        step_reports = sum(len(t.steps) for r in baseline_runs for t in r.targets.values())
        self.console.rule("summary")
        self.console.print(
            f"jobs: {targets} targets in {len(runs)} runs, {ok} succeeded; "
            f"baseline: {sum(len(r.targets) for r in baseline_runs)} instances configured "
            f"({step_reports} step reports)\n"
            f"reimages: {len(self.reimaged)} ({', '.join(self.reimaged)}), nothing lost\n"
            f"storage transactions: {worker_tx} by the workers (last heartbeat of the reimaged "
            f"incarnation), {self.storage.meter.total} by the controller\n"
            f"elapsed: {time.monotonic() - self.t0:.1f}s; all worker processes stopped"
        )

    # --- watching --------------------------------------------------------------------------

    def _all_configured(self) -> bool:
        rows = list_instances(self.storage)
        live = [r for r in rows if r.live(utcnow())]
        return (
            len(live) == sum(ROLES.values())
            and all(r.state == "ready" and r.baseline_version == 1 for r in live)
            and all(i.alive for i in self.fleet.instances.values())
        )

    def _watch(
        self,
        what: str,
        condition: Callable[[], bool],
        *,
        timeout: float,
        runs: list[str] | None = None,
    ) -> None:
        self.say(f"waiting: {what}")
        deadline = time.monotonic() + timeout
        with Live(
            self._view(runs), console=self.console, refresh_per_second=4, transient=True
        ) as live:
            while not condition():
                if time.monotonic() > deadline:
                    raise ConfigError(f"the demo timed out waiting for: {what}")
                self.folder.fold_all()
                live.update(self._view(runs))
                time.sleep(0.25)
        self.say(f"[green]done[/]: {what}")

    def _view(self, runs: list[str] | None) -> Group:
        table = Table(title="fleet", title_justify="left")
        for col in ("instance", "incarnation", "state", "baseline", "process"):
            table.add_column(col)
        rows: dict[str, InstanceSummary] = {r.instance: r for r in list_instances(self.storage)}
        for name, inst in self.fleet.instances.items():
            r = rows.get(name)
            table.add_row(
                name,
                r.incarnation if r else "-",
                r.state if r else "booting",
                f"v{r.baseline_version}" if r and r.baseline_version else "-",
                "[green]running[/]" if inst.alive else "[red]down[/]",
            )
        parts: list[Table] = [table]
        store = RunStore(self.storage)
        parts += [run_table(store.get(r)) for r in runs or []]
        return Group(*parts)


def main(
    connection_string: str | None = None, http: str | None = DASHBOARD, stay: bool = False
) -> int:
    console = Console()
    return Demo(console, connection_string, http).run(stay=stay)
