"""The decisions of agent self-update, with no storage and no service manager: which version
the launcher starts and when it switches back (rolecall/launch.py), what the agent step does
and the commands it runs on Linux and on Windows (worker/upgrade.py). All pure, so every
platform's paths are checked here, on Linux."""

from __future__ import annotations

import json
import os
from pathlib import Path, PureWindowsPath

import pytest

from rolecall import launch
from rolecall.schemas.agents import AgentPin
from rolecall.schemas.errors import PayloadTampered
from rolecall.schemas.jobs import PayloadRef
from rolecall.worker import upgrade
from rolecall.worker.shutdown import ExitCode
from rolecall.worker.upgrade import Step

PIN = AgentPin(version="0.3.0", release_sha256="a" * 64)
BOTH = {"0.2.0", "0.3.0"}.__contains__


def installed(*versions: str):  # type: ignore[no-untyped-def]
    return set(versions).__contains__


# --- the launcher --------------------------------------------------------------------------


def test_a_plain_start_runs_the_current_version_unchanged() -> None:
    state = {"current": "0.2.0", "python": "/usr/bin/python3", "x_later": 1}
    start = launch.decide(state, counts=True, installed=BOTH)
    assert (start.version, start.watch, start.state) == ("0.2.0", False, state)


def test_a_pending_version_is_counted_watched_and_then_rolled_back() -> None:
    """What the old agent writes after installing and checking the new version; three
    starts without a check-in, and the fourth start runs the version before."""
    state = upgrade.switched({"current": "0.2.0", "python": "py"}, "0.3.0", baseline=4)
    for n in (1, 2, 3):
        start = launch.decide(state, counts=True, installed=BOTH)
        assert (start.version, start.watch) == ("0.3.0", True)
        state = start.state
        assert state["pending"]["starts"] == n
    start = launch.decide(state, counts=True, installed=BOTH)
    assert (start.version, start.watch) == ("0.2.0", False)
    assert start.state["current"] == "0.2.0" and start.state["pending"] is None
    assert start.state["failed"] == {
        "version": "0.3.0",
        "baseline": 4,
        "reason": "rolled back to 0.2.0: 0.3.0 started 3 times without checking in",
    }
    assert start.state["python"] == "py"


def test_a_version_that_checked_in_is_started_plainly_from_then_on() -> None:
    state = upgrade.switched({"current": "0.2.0"}, "0.3.0", baseline=4)
    state = launch.decide(state, counts=True, installed=BOTH).state
    confirmed = upgrade.checked_in(state, "0.3.0")
    assert confirmed is not None and confirmed["previous"] == "0.2.0"
    start = launch.decide(confirmed, counts=True, installed=BOTH)
    assert (start.version, start.watch, start.state) == ("0.3.0", False, confirmed)
    assert upgrade.checked_in(confirmed, "0.3.0") is None  # nothing pending: nothing to do
    assert upgrade.checked_in(state, "0.2.0") is None  # only the pending version confirms


def test_a_check_or_help_neither_counts_as_a_start_nor_is_watched() -> None:
    state = upgrade.switched({"current": "0.2.0"}, "0.3.0", baseline=1)
    for args in (["worker", "--check"], ["--help"], ["instances"], ["worker", "--help"]):
        assert not launch.is_agent_start(args)
        start = launch.decide(state, counts=launch.is_agent_start(args), installed=BOTH)
        assert (start.version, start.watch, start.state) == ("0.3.0", False, state)
    assert launch.is_agent_start(["worker", "--role", "web"])
    assert launch.is_agent_start(["worker", "--once"])


def test_a_missing_current_version_switches_back_when_there_is_one() -> None:
    state = {"current": "0.3.0", "previous": "0.2.0"}
    start = launch.decide(state, counts=True, installed=installed("0.2.0"))
    assert start.version == "0.2.0" and "0.3.0 is not installed" in (start.note or "")
    alone = {"current": "0.3.0", "previous": None}
    start = launch.decide(alone, counts=True, installed=installed())
    assert start.version == "0.3.0" and start.state == alone  # nothing to switch back to


def test_an_install_script_records_the_version_before_as_previous() -> None:
    first = launch.record_install({}, "0.2.0", "/usr/bin/python3", had=installed("0.2.0"))
    assert first == {"current": "0.2.0", "previous": None, "python": "/usr/bin/python3",
                     "pending": None, "failed": None}  # fmt: skip
    second = launch.record_install({**first, "x": 1}, "0.3.0", "py", had=BOTH)
    assert (second["current"], second["previous"], second["x"]) == ("0.3.0", "0.2.0", 1)
    again = launch.record_install(second, "0.3.0", "py", had=BOTH)
    assert again["previous"] == "0.2.0"  # reinstalling the current version keeps its previous
    gone = launch.record_install(first, "0.3.0", "py", had=installed("0.3.0"))
    assert gone["previous"] is None  # the version before is not there to switch back to


def test_agent_json_is_written_atomically_and_keeps_unknown_keys(tmp_path: Path) -> None:
    launch.write_state(tmp_path, {"current": "0.2.0", "x_from_a_later_launcher": [1]})
    state = launch.read_state(tmp_path)
    launch.write_state(tmp_path, upgrade.switched(state, "0.3.0", 2))
    assert json.loads((tmp_path / "agent.json").read_text())["x_from_a_later_launcher"] == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["agent.json"]
    (tmp_path / "agent.json").write_text("{")
    with pytest.raises(launch.BadState, match="cannot read"):
        launch.read_state(tmp_path)
    with pytest.raises(launch.BadState, match="not a side-by-side install"):
        launch.read_state(tmp_path / "nowhere")


def test_the_launcher_and_the_agent_agree_on_the_upgrade_exit_code() -> None:
    assert launch.UPGRADING == ExitCode.UPGRADING == 6
    assert ExitCode.UPGRADING != ExitCode.REBOOTING  # the unit's RestartPreventExitStatus


def test_commands_for_linux_and_windows() -> None:
    root = Path("/opt/rolecall")
    assert launch.agent_command(root, "0.3.0", ["worker"], windows=False) == [
        "/opt/rolecall/versions/0.3.0/bin/python", "-I", "-m", "rolecall", "worker",
    ]  # fmt: skip
    win = PureWindowsPath(r"C:\Program Files\rolecall")
    command = launch.agent_command(Path(win), "0.3.0", ["worker"], windows=True)
    assert PureWindowsPath(command[0]).parts[-4:] == ("versions", "0.3.0", "Scripts",
                                                      "python.exe")  # fmt: skip
    staging = upgrade.staging_dir(root, "0.3.0")
    assert staging == Path("/opt/rolecall/versions/.incoming-0.3.0")
    assert upgrade.venv_command("/usr/bin/python3", staging) == [
        "/usr/bin/python3", "-m", "venv", "/opt/rolecall/versions/.incoming-0.3.0"]  # fmt: skip
    pip = upgrade.pip_command(staging, Path("/w"), "0.3.0", windows=True)
    assert pip[0].endswith(os.path.join("Scripts", "python.exe"))
    assert pip[1:] == ["-m", "pip", "install", "--no-index", "--find-links", "/w", "--no-input",
                       "--disable-pip-version-check", "rolecall==0.3.0"]  # fmt: skip


# --- the agent step ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("running", "side_by_side", "failed", "expected"),
    [
        ("0.3.0", None, None, Step.SATISFIED),
        ("0.3.0", upgrade.NOT_SIDE_BY_SIDE, None, Step.SATISFIED),
        ("0.2.0", upgrade.NOT_SIDE_BY_SIDE, None, Step.CANNOT),
        ("0.2.0", None, None, Step.INSTALL),
        ("0.2.0", None, {"version": "0.3.0", "baseline": 7, "reason": "r"}, Step.REFUSED),
        ("0.2.0", None, {"version": "0.3.0", "baseline": None, "reason": "r"}, Step.REFUSED),
        # the baseline changed since: try again
        ("0.2.0", None, {"version": "0.3.0", "baseline": 6, "reason": "r"}, Step.INSTALL),
        # another version failed: not this one's business
        ("0.2.0", None, {"version": "0.3.1", "baseline": 7, "reason": "r"}, Step.INSTALL),
    ],
)
def test_what_the_agent_step_does(
    running: str, side_by_side: str | None, failed: dict[str, object] | None, expected: Step
) -> None:
    state = {"current": running, "failed": failed}
    plan = upgrade.plan(PIN, running, side_by_side=side_by_side, state=state, baseline=7)
    assert plan.step is expected
    if expected is Step.CANNOT:
        assert plan.reason == "cannot self-update: not installed side by side (docs/deploy.md)"
    if expected is Step.REFUSED:
        assert plan.reason == "r"
    if expected is Step.SATISFIED:
        assert plan.reason == "agent 0.3.0"
    upgraded = upgrade.plan(PIN, "0.3.0", side_by_side=None, state={"previous": "0.2.0"},
                            baseline=7)  # fmt: skip
    assert upgraded.reason == "agent 0.3.0 (upgraded from 0.2.0)"


def test_the_install_root_is_found_only_from_versions_of_the_running_version() -> None:
    assert upgrade.install_root(Path("/opt/rolecall/versions/0.2.0"), "0.2.0") == Path(
        "/opt/rolecall"
    )
    assert upgrade.install_root(Path("/opt/rolecall/versions/0.2.0"), "0.3.0") is None
    assert upgrade.install_root(Path("/home/me/rolecall/.venv"), "0.2.0") is None


def test_the_pin_of_a_baseline_this_agent_cannot_read_is_still_found() -> None:
    """A baseline of a later contract: its other fields are unknown, its pin is not."""
    later = {"schema_version": "1.9", "kind": "baseline", "role": "web", "version": 9,
             "x_new_critical": {"a": 1}, "agent": PIN.model_dump(mode="json")}  # fmt: skip
    assert upgrade.pinned(json.dumps(later).encode(), "web") == (PIN, 9)
    assert upgrade.pinned(json.dumps(later).encode(), "api") is None  # not our role's
    assert upgrade.pinned(json.dumps({**later, "agent": {"version": "../x"}}).encode(),
                          "web") is None  # fmt: skip
    assert upgrade.pinned(b"not json", "web") is None


def wheel(filename: str) -> PayloadRef:
    return PayloadRef(container="rc-payloads", blob="sha256/" + "0" * 64, sha256="0" * 64,
                      size=1, filename=filename)  # fmt: skip


def test_only_wheels_for_this_operating_system_are_downloaded() -> None:
    wheels = [
        wheel("rolecall-0.3.0-py3-none-any.whl"),
        wheel("cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl"),
        wheel("pyyaml-6.0.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl"),
        wheel("cffi-2.1.1-cp311-cp311-musllinux_1_2_aarch64.whl"),
        wheel("cryptography-50.0.2-cp311-abi3-win_amd64.whl"),
        wheel("pydantic_core-2.50.5-cp311-cp311-macosx_11_0_arm64.whl"),
    ]
    assert len(upgrade.wanted(wheels, "linux")) == 4
    assert [w.filename for w in upgrade.wanted(wheels, "win32")] == [
        "rolecall-0.3.0-py3-none-any.whl",
        "cryptography-50.0.2-cp311-abi3-win_amd64.whl",
    ]
    assert len(upgrade.wanted(wheels, "darwin")) == 2
    assert upgrade.wanted(wheels, "sunos5") == wheels  # unknown: let pip choose


@pytest.mark.parametrize("name", ["../x-1-py3-none-any.whl", ".hidden.whl", "x.tar.gz", "a/b.whl"])
def test_a_wheel_name_that_is_not_a_plain_file_name_is_refused(name: str) -> None:
    with pytest.raises(PayloadTampered, match="is not a wheel file name"):
        upgrade.wheel_name(wheel(name))


def test_pip_sees_none_of_the_machines_pip_settings() -> None:
    env = upgrade.pip_environment({"PIP_INDEX_URL": "https://evil", "pip_find_links": "/x",
                                   "PATH": "/usr/bin"})  # fmt: skip
    assert env == {"PATH": "/usr/bin", "PIP_CONFIG_FILE": os.devnull}


def test_the_check_runs_with_this_agents_identity_and_settings() -> None:
    args = upgrade.check_args(
        role="web", instance="vm-1", namespace="rc", state_dir=Path("/var/lib/rolecall"),
        config=Path("/etc/rolecall/worker.toml"), trusted_keys=[Path("/k1.pub"), Path("/k2.pub")],
    )  # fmt: skip
    assert args[:2] == ["worker", "--check"]
    assert " ".join(args[2:]) == (
        "--role web --instance vm-1 --namespace rc --state-dir /var/lib/rolecall "
        "--config /etc/rolecall/worker.toml --trusted-key /k1.pub --trusted-key /k2.pub"
    )


def test_a_settled_install_keeps_the_current_previous_and_running_versions_only() -> None:
    entries = ["0.1.9", "0.2.0", "0.3.0", "0.3.1", ".incoming-0.4.0", ".install-123"]
    state = {"current": "0.3.0", "previous": "0.2.0", "pending": None}
    assert upgrade.prunable(entries, state, "0.3.0") == [".incoming-0.4.0", "0.1.9", "0.3.1"]
    assert upgrade.prunable(entries, state, "0.3.1") == [".incoming-0.4.0", "0.1.9"]
    pending = upgrade.switched(state, "0.3.1", baseline=2)
    assert upgrade.prunable(entries, pending, "0.3.0") == []  # never while one is pending
