"""The launcher (rolecall/launch.py) as the service manager runs it: a real process, copied
into an install root as install.sh does, starting stand-in agent versions. Each stand-in is
a tiny script in ``versions/<V>/bin/python`` that records how it was started and then does
what its version is told to (crash, hang, check in and serve), so what is tested is the
launcher's own behaviour: counting starts, watching for the check-in, switching back, passing
signals on. The real agents take their turn in tests/test_self_update.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rolecall import launch
from rolecall.worker import upgrade
from tests.fleet import wait_for

STAND_IN = """
import json, os, signal, sys
from pathlib import Path

root, version, args = Path(os.environ["ROOT"]), sys.argv[1], sys.argv[2:]
def log(text):
    with open(root / "ran.log", "a") as f:
        f.write(f"{version} {text}\\n")
log(" ".join(args))
behaviour = (root / "versions" / version / "behaviour").read_text().split()
if behaviour[0] == "exit":
    sys.exit(int(behaviour[1]))
def stop(signum, frame):
    log("stopped by signal")
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
if behaviour[0] == "checkin":
    state = json.loads((root / "agent.json").read_text())
    (root / "agent.json").write_text(json.dumps({**state, "pending": None}))
    log("checked in")
while True:
    signal.pause()
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An install root laid out as install.sh does, with stand-ins for 0.2.0 and 0.3.0."""
    root = tmp_path / "opt-rolecall"
    root.mkdir()
    shutil.copy(launch.__file__, root / "launch.py")
    (root / "stand_in.py").write_text(STAND_IN)
    for version in ("0.2.0", "0.3.0"):
        python = launch.interpreter(root, version)
        python.parent.mkdir(parents=True)
        python.write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{root}/stand_in.py" {version} "$@"\n'
        )
        python.chmod(0o755)
        behave(root, version, "exit 0")
    launch.write_state(root, {"current": "0.2.0", "previous": None, "python": sys.executable})
    return root


def behave(root: Path, version: str, behaviour: str) -> None:
    (launch.version_dir(root, version) / "behaviour").write_text(behaviour)


def upgraded(root: Path, **extra: object) -> None:
    """What the 0.2.0 agent writes once 0.3.0 is installed and checked (worker/upgrade.py)."""
    state = upgrade.switched(launch.read_state(root), "0.3.0", baseline=4)
    launch.write_state(root, {**state, **extra})


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-I", str(root / "launch.py"), "worker", "--role", "web", *args]
    return subprocess.Popen(argv, env={**os.environ, "ROOT": str(root)}, text=True,
                            stderr=subprocess.PIPE)  # fmt: skip


def ran(root: Path) -> list[str]:
    path = root / "ran.log"
    return path.read_text().splitlines() if path.exists() else []


def test_the_current_version_is_started_as_python_isolated_module(root: Path) -> None:
    p = start(root)
    assert p.wait(timeout=60) == 0
    assert ran(root) == ["0.2.0 -I -m rolecall worker --role web"]


def test_an_upgrade_that_crashes_is_rolled_back_after_three_starts(root: Path) -> None:
    """Standing in for systemd (Restart=always): start the launcher again after each exit."""
    upgraded(root)
    behave(root, "0.3.0", "exit 1")
    codes = [start(root).wait(timeout=60) for _ in range(3)]
    assert codes == [1, 1, 1] and [r.split()[0] for r in ran(root)] == ["0.3.0"] * 3
    p = start(root)
    assert p.wait(timeout=60) == 0
    assert p.stderr is not None
    said = p.stderr.read()
    assert "rolled back to 0.2.0: 0.3.0 started 3 times without checking in" in said
    assert ran(root)[-1].startswith("0.2.0 ")
    state = launch.read_state(root)
    assert (state["current"], state["pending"]) == ("0.2.0", None)
    assert state["failed"]["version"] == "0.3.0" and state["failed"]["baseline"] == 4


def test_an_upgrade_that_never_checks_in_is_stopped_and_rolled_back(root: Path) -> None:
    upgraded(root, check_in_s=1)
    behave(root, "0.3.0", "hang")
    p = start(root)
    assert p.wait(timeout=60) == 0  # 0.3.0 stopped, then 0.2.0 ran (and exited 0)
    assert [r.split()[0] for r in ran(root)] == ["0.3.0", "0.3.0", "0.2.0"]
    assert ran(root)[1] == "0.3.0 stopped by signal"
    failed = launch.read_state(root)["failed"]
    assert failed["reason"] == "rolled back to 0.2.0: 0.3.0 did not check in within 1s"


def test_an_upgrade_that_checks_in_keeps_running_and_gets_the_services_signals(
    root: Path,
) -> None:
    upgraded(root, check_in_s=600)
    behave(root, "0.3.0", "checkin")
    p = start(root)
    try:
        wait_for(lambda: "0.3.0 checked in" in ran(root), what="the new version's check-in")
        state = launch.read_state(root)
        assert (state["current"], state["previous"], state["pending"]) == ("0.3.0", "0.2.0", None)
        p.send_signal(signal.SIGTERM)  # systemctl stop: to the launcher, the service's process
        assert p.wait(timeout=60) == 0
    finally:
        p.kill()
    assert ran(root)[-1] == "0.3.0 stopped by signal"
    assert not launch.read_state(root).get("failed")


def test_a_root_without_agent_json_is_one_clear_line(root: Path) -> None:
    (root / "agent.json").unlink()
    p = start(root)
    assert p.wait(timeout=60) == 2
    assert p.stderr is not None
    assert p.stderr.read().strip() == (
        f"rolecall launcher: no agent.json in {root}: not a side-by-side install (docs/deploy.md)"
    )


def test_an_install_script_records_a_version_that_is_there(root: Path) -> None:
    def record(version: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-I", str(root / "launch.py"), "--record-install",
                               version], capture_output=True, text=True, check=False)  # fmt: skip

    assert record("0.3.0").returncode == 0
    state = launch.read_state(root)
    assert (state["current"], state["previous"]) == ("0.3.0", "0.2.0")
    assert json.loads((root / "agent.json").read_text())["python"] == sys.executable
    r = record("9.9.9")
    assert r.returncode == 2 and "9.9.9 is not a virtual environment" in r.stderr
