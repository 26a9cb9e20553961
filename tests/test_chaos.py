"""Chaos: a fleet under reimages (mid-job), crashes and storage faults loses nothing.

The small configuration runs in `make test` (tens of seconds), once with one agent version
and once with a mixed fleet (every other instance runs an older wheel of this code, from a
venv of its own, as lagging images do); the large one (20 instances, 3 roles, 1,000 jobs, a
reimage every 3 s, crashes, an Azurite restart, 10 % faults) runs with `make chaos` and its
report is in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from rolecall import __version__
from rolecall.devtools.sim.config import LARGE, SMALL
from rolecall.devtools.sim.runner import Simulation
from tests.agent_wheels import build_agent_wheel, cache_dir, dependency_wheels, install_agent
from tests.fleet import ROLECALL, wait_for

#: older than this checkout's version, and the same code: a lagging image's agent
OLDER = "0.2.0.dev1"


def run_and_check(cfg, root: Path):  # type: ignore[no-untyped-def]
    state = Simulation(cfg, root).run()
    report = state.report
    failed = [f"{c.name}: {c.detail}" for c in report.checks if not c.ok]
    assert not failed, "\n".join(failed)
    return report


def test_reimages_mid_job_and_storage_faults_lose_nothing(tmp_path: Path) -> None:
    report = run_and_check(SMALL.model_copy(update={"seed": 7}), tmp_path)
    assert report.figures["reimages"] >= 2
    assert report.figures["reimages mid-job"] >= 1
    assert report.figures["injected faults"] > 0


@pytest.fixture(scope="module")
def older_agent(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    out = tmp_path_factory.mktemp("older-agent")
    wheel = build_agent_wheel(out, OLDER)
    return install_agent(out / "venv", wheel, dependency_wheels(cache_dir(request, out), wheel))


def test_a_mixed_fleet_of_agent_versions_loses_nothing(tmp_path: Path, older_agent: Path) -> None:
    report = run_and_check(SMALL.model_copy(update={"seed": 11, "older_agent": str(older_agent)}),
                           tmp_path)  # fmt: skip
    assert report.figures["agent versions"] == {OLDER: 2, __version__: 2}
    assert report.figures["reimages"] >= 2


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmd:
                found.append(cmd)
    return found


def test_a_simulation_stopped_with_sigterm_leaves_nothing_running(tmp_path: Path) -> None:
    """What a CI timeout or ``kill`` does: the workers and Azurite go with the simulation."""
    work, out = tmp_path / "sim", (tmp_path / "out.txt").open("w")
    with out:
        proc = subprocess.Popen(
            [ROLECALL, "sim", "--workdir", str(work)], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_for(lambda: "registered" in (tmp_path / "out.txt").read_text(), timeout=120,
                     what="the simulated fleet to boot")  # fmt: skip
            assert processes_mentioning(str(work)), "workers and Azurite are running"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) != 0
        finally:
            proc.kill()
    assert processes_mentioning(str(work)) == []


@pytest.mark.chaos
def test_large_chaos(tmp_path: Path) -> None:
    report = run_and_check(LARGE, tmp_path)
    out = Path(__file__).parent.parent / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "chaos-report.json").write_text(json.dumps(report.as_dict(), indent=2))
    assert report.figures["azurite restarts"] == 1
    assert report.figures["targets"] >= 1000
