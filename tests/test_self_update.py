"""An agent upgrades itself through the storage account, end to end.

Three wheels of this checkout are built under other version numbers: an old agent (OLD), a new
one (NEW), and a deliberately broken one (BROKEN: it passes ``rolecall worker --check`` and
crashes at every start). OLD is installed as an image bake installs it (deploy/linux/
install.sh, offline from wheels, into a side-by-side layout), and started against Azurite as
its unit starts it, through the launcher. The operator publishes NEW and BROKEN as signed
releases, and pins them in the role's baseline while jobs keep arriving:

* OLD installs NEW beside itself, checks it, exits 6; NEW registers with its version, checks
  in, and applies the rest of the baseline;
* NEW installs BROKEN the same way; BROKEN crashes three times; the launcher switches back to
  NEW, which reports the rolled-back agent step and applies the rest;
* every job sent meanwhile runs and succeeds.

What stands in for what: tests/service.py stands in for systemd (restarts after every exit
but 5, with no 10 s pause); Azurite for the storage account; a state directory for the
instance's disk; the test's Python environment for the base interpreter, and dependency
wheels pinned to it (tests/agent_wheels.py) for what an operator would download for the
instances' platform. Nothing else is simulated: the agents, the launcher, pip and venv are
real.
"""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rolecall import launch
from rolecall.controller.fleet import InstanceSummary, list_instances
from rolecall.controller.fold import EventFolder
from rolecall.controller.runs import RunRequest, start_run
from rolecall.controller.signing import generate, load_signer
from rolecall.controller.store import RunStore
from rolecall.schemas.runs import RunMode, RunState
from rolecall.storage.clients import Storage
from tests.agent_wheels import build_agent_wheel, cache_dir, dependency_wheels, wheelhouse
from tests.fleet import TEST_ARGS, Ledger, cli, cli_json, wait_for, write_baseline
from tests.service import Service

REPO = Path(__file__).resolve().parents[1]
OLD, NEW, BROKEN = "0.2.1", "0.2.2", "0.2.3"
#: an upgrade builds a venv and pip-installs a few dozen wheels; on a busy CI machine, slowly
UPGRADE_S = 240.0


def break_at_start(tree: Path) -> None:
    """BROKEN: its check passes (it runs no Agent), every agent start dies."""
    agent = tree / "worker" / "agent.py"
    text = agent.read_text()
    start = "    def boot(self) -> None:\n"
    assert start in text
    agent.write_text(
        text.replace(start, start + f'        raise SystemExit("{BROKEN} is broken on purpose")\n')
    )


@pytest.fixture(scope="module")
def agents(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> tuple[dict[str, Path], list[Path]]:
    """(version -> its rolecall wheel, the dependency wheels every release carries)."""
    out = tmp_path_factory.mktemp("agent-wheels")
    with ThreadPoolExecutor(3) as pool:
        jobs = {v: pool.submit(build_agent_wheel, out / v, v, break_at_start if v == BROKEN else None)
                for v in (OLD, NEW, BROKEN)}  # fmt: skip
        built = {v: f.result() for v, f in jobs.items()}
    deps = dependency_wheels(cache_dir(request, out / "deps"), built[OLD])
    return built, sorted(deps.glob("*.whl"))


def bake(root: Path, wheel: Path, deps: list[Path], trusted: Path) -> Path:
    """deploy/linux/install.sh, offline, as an image bake would run it."""
    house = wheelhouse(root / "bake-wheels", wheel, *deps)
    argv = ["bash", REPO / "deploy/linux/install.sh", "--from", wheel, "--python", sys.executable,
            "--prefix", root / "opt", "--etc", root / "etc", "--systemd-dir", root / "systemd",
            "--no-enable", "--pip-option=--no-index", f"--pip-option=--find-links={house}",
            "--trusted-key", trusted]  # fmt: skip
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600,
                       check=False, cwd=root)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return root / "opt"


def instance(storage: Storage) -> InstanceSummary | None:
    found = list_instances(storage, "web")
    return found[0] if found else None


def running(storage: Storage, agent: str, baseline: int) -> InstanceSummary | None:
    s = instance(storage)
    want = (agent, baseline, "ready")
    return s if s is not None and (s.agent_version, s.baseline_version, s.state) == want else None


def baseline_file(root: Path, ledger: Ledger, steps: list[str], agent: str | None) -> Path:
    path = write_baseline(root, [(name, ledger.script(name.replace(" ", "-"))) for name in steps])
    if agent is not None:
        path.write_text(path.read_text() + f"agent: {agent}\n")
    return path


class Jobs:
    """Runs sent while the agent upgrades, and the ledger that proves each one ran."""

    def __init__(self, storage: Storage, key: Path, root: Path) -> None:
        self.storage, self.signer = storage, load_signer(key)
        self.ledger = root / "jobs.txt"
        self.ledger.touch()
        self.script = root / "job.sh"
        self.script.write_text(
            f'#!/bin/sh\necho "$ROLECALL_JOB_ID" >> "{self.ledger}"\nsleep 0.2\n'
        )
        self.runs: list[str] = []

    def send(self, n: int) -> None:
        for i in range(n):
            mode = RunMode.EACH if i % 3 == 0 else RunMode.ANY  # the instance queue, too
            req = RunRequest(
                role="web", script=self.script, mode=mode, timeout_s=60, max_attempts=5
            )
            self.runs.append(start_run(self.storage, req, signer=self.signer).run_id)

    def all_succeeded(self) -> bool:
        EventFolder(self.storage).fold_all()
        store = RunStore(self.storage)
        return all(store.get(r).state is RunState.SUCCEEDED for r in self.runs)

    def ran(self) -> set[str]:
        return {line.split(".")[0] for line in self.ledger.read_text().split()}


def test_an_old_agent_upgrades_itself_side_by_side_and_a_broken_release_is_rolled_back(
    agents: tuple[dict[str, Path], list[Path]],
    env: dict[str, str],
    storage: Storage,
    ledger: Ledger,
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    wheels, deps = agents
    key = tmp_path / "controller.key"
    public, _ = generate(key)
    opt = bake(tmp_path / "image", wheels[OLD], deps, public)
    env["ROLECALL_SIGNING_KEY"] = str(key)
    for v in (NEW, BROKEN):
        r = cli(env, "agent", "publish", str(wheelhouse(tmp_path / f"release-{v}", wheels[v], *deps)),
                "--version", v)  # fmt: skip
        assert r.returncode == 0, r.stderr
    v1 = baseline_file(tmp_path / "v1", ledger, ["configure"], None)
    assert cli(env, "baseline", "set", "web", str(v1)).returncode == 0
    service = Service(
        [str(opt / "bin/rolecall"), "worker", "--role", "web", "--instance", "vm-1",
         "--state-dir", str(tmp_path / "disk"), "--trusted-key", str(public), *TEST_ARGS],
        env, tmp_path / "service",
    ).start()  # fmt: skip
    jobs = Jobs(storage, key, tmp_path)
    try:
        first = wait_for(lambda: running(storage, OLD, 1), timeout=60, what=f"{OLD} to boot")
        jobs.send(6)

        # --- the upgrade: OLD installs NEW beside itself and restarts into it ---------------
        v2 = baseline_file(tmp_path / "v2", ledger, ["configure", "after upgrade"], NEW)
        r = cli(env, "baseline", "set", "web", str(v2))
        assert r.returncode == 0, r.stderr
        jobs.send(6)
        now = wait_for(
            lambda: running(storage, NEW, 2), timeout=UPGRADE_S, what=f"{NEW} to take over"
        )
        assert now.incarnation == first.incarnation  # the same disk: an upgrade, not a reimage
        assert service.codes()[0] == 6 and "restarting into it" in service.log(1)
        assert "after-upgrade" not in service.log(1) and "after upgrade" in service.log(2)
        assert [e[1] for e in ledger.entries("after-upgrade")] == ["vm-1"]
        status = cli_json(env, "status", "baseline-web-v2")
        assert status["state"] == "succeeded"
        assert status["targets"][0]["steps"] == {str(i): "succeeded" for i in (-1, 0, 1)}
        state = launch.read_state(opt)
        assert (state["current"], state["previous"], state["pending"]) == (NEW, OLD, None)
        assert sorted(p.name for p in (opt / "versions").iterdir()) == [OLD, NEW]
        shown = cli_json(env, "agent", "show")
        assert shown["fleet"] == [{"role": "web", "agent": NEW, "live_instances": 1}]

        # --- a broken release: installed, checked, crashes, switched back -------------------
        jobs.send(6)
        v3 = baseline_file(
            tmp_path / "v3", ledger, ["configure", "after upgrade", "after rollback"], BROKEN
        )
        assert cli(env, "baseline", "set", "web", str(v3)).returncode == 0
        jobs.send(6)
        wait_for(lambda: running(storage, NEW, 3), timeout=UPGRADE_S, what="the switch back to NEW")
        status = cli_json(env, "status", "baseline-web-v3")
        target = status["targets"][0]
        reason = f"rolled back to {NEW}: {BROKEN} started 3 times without checking in"
        assert (status["state"], target["reason"]) == ("failed", reason)
        assert target["steps"] == {"-1": "failed"} | {str(i): "succeeded" for i in range(3)}
        assert [e[1] for e in ledger.entries("after-rollback")] == ["vm-1"]
        state = launch.read_state(opt)
        assert state["current"] == NEW
        assert state["failed"] == {"version": BROKEN, "baseline": 3, "reason": reason}
        # settled: what is neither current nor previous is gone (the broken version, and OLD:
        # after a rollback there is no previous)
        assert sorted(p.name for p in (opt / "versions").iterdir()) == [NEW]
        assert f"{BROKEN} is broken on purpose" in service.log(3)
        assert reason in service.log(6)

        # --- nothing lost ----------------------------------------------------------------------
        wait_for(jobs.all_succeeded, timeout=120, what="every job sent during the upgrades")
        assert jobs.ran() >= set(jobs.runs)
    finally:
        code = service.stop()
    assert service.codes() == [6, 6, 1, 1, 1, code] and code == 0
    print(f"\nself-update end to end took {time.monotonic() - began:.0f}s")
