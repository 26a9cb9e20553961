"""Agent releases against a real Azurite: what an operator publishes, pins and sees, and what
an agent refuses to install. Releases here are made of stand-in wheels (tests/agent_wheels.py):
enough for publishing, pinning and verifying; the real upgrade is tests/test_self_update.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rolecall import __version__, launch
from rolecall.controller.agents import find_release, publish_release
from rolecall.controller.signing import Signer, generate, load_signer
from rolecall.schemas.agents import AgentPin
from rolecall.schemas.errors import AgentUpgradeFailed, ConfigError, InvalidName
from rolecall.schemas.names import Names
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from rolecall.worker.config import WorkerSettings
from rolecall.worker.identity import Identity
from rolecall.worker.payloads import PayloadCache
from rolecall.worker.self_update import SelfUpdate
from rolecall.worker.trust import TrustedKeys
from rolecall.worker.upgrade import Step
from tests.agent_wheels import fake_agent_wheel
from tests.conftest import OperatorKey
from tests.fleet import Fleet, Ledger, cli, cli_json, wait_for, write_baseline


def release_dir(root: Path, version: str, extra: bytes = b"dependency") -> Path:
    """A WHEELDIR: the agent's wheel and one dependency."""
    fake_agent_wheel(root, version)
    (root / "dep-1.0-py3-none-any.whl").write_bytes(extra)
    return root


@pytest.fixture
def signing(env: dict[str, str], operator_key: OperatorKey) -> Path:
    """The key the CLI signs with (``env`` has it) and the workers trust."""
    assert env["ROLECALL_SIGNING_KEY"] == str(operator_key.private)
    return operator_key.private


# --- what operators do -------------------------------------------------------------------


def test_publish_pin_and_show_and_an_agent_not_installed_side_by_side_says_so(
    env: dict[str, str],
    storage: Storage,
    signing: Path,
    workers: Fleet,
    ledger: Ledger,
    tmp_path: Path,
) -> None:
    """The operator's whole path, ending with an agent from a development venv (no
    side-by-side install): it says once why it cannot follow the pin and applies the rest."""
    wheels = release_dir(tmp_path / "dist", "0.3.0")
    r = cli(env, "agent", "publish", str(wheels), "--version", "0.3.0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("agent 0.3.0 published: 2 wheels, contract 1.3, release sha256:")
    baseline = write_baseline(tmp_path / "b", [("configure", ledger.script("configured"))])
    baseline.write_text(baseline.read_text() + "agent: 0.3.0\n")
    r = cli(env, "baseline", "set", "web", str(baseline))
    assert r.returncode == 0, r.stderr
    shown = cli_json(env, "agent", "show")
    (release,) = shown["releases"]
    assert (release["version"], release["contract"], release["wheels"]) == ("0.3.0", "1.3", 2)
    assert release["signed_by"] == load_signer(signing).key_id  # type: ignore[union-attr]
    assert shown["pins"] == [{"role": "web", "baseline_version": 1, "agent": "0.3.0"}]
    pin = cli_json(env, "baseline", "show", "web")["agent"]
    assert pin == {"schema_version": 1, "version": "0.3.0", "release_sha256": release["sha256"]}

    workers.worker("web", "web-0")
    wait_for(lambda: ledger.entries("configured"), what="the rest of the baseline")
    status = wait_for(
        lambda: (s := cli_json(env, "status", "baseline-web-v1"))["state"] == "failed" and s,
        what="the agent step's report",
    )
    (target,) = status["targets"]
    assert target["steps"] == {"-1": "failed", "0": "succeeded"}
    assert target["reason"] == "cannot self-update: not installed side by side (docs/deploy.md)"
    table = cli({**env, "COLUMNS": "200"}, "status", "baseline-web-v1").stdout
    assert "failed (1/2 steps)" in table and "cannot self-update" in table
    fleet = wait_for(lambda: cli_json(env, "agent", "show")["fleet"], what="the fleet")
    assert fleet == [{"role": "web", "agent": __version__, "live_instances": 1}]
    assert wait_for(lambda: cli_json(env, "instances")[0]["state"] == "ready", what="ready")


def test_baseline_set_refuses_an_unpublished_agent_version_with_one_line(
    env: dict[str, str], storage: Storage, ledger: Ledger, tmp_path: Path
) -> None:
    baseline = write_baseline(tmp_path / "b", [("configure", ledger.script("configured"))])
    baseline.write_text(baseline.read_text() + "agent: 0.9.0\n")
    r = cli(env, "baseline", "set", "web", str(baseline))
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: agent 0.9.0 is not published; publish it first with "
        "`rolecall agent publish WHEELDIR --version 0.9.0`"
    )
    baseline.write_text(baseline.read_text().replace("agent: 0.9.0", "agent: 1.10"))
    r = cli(env, "baseline", "set", "web", str(baseline))
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert 'write the version as a string, e.g. agent: "1.1"' in r.stderr
    assert cli(env, "baseline", "show", "web").returncode == 2  # nothing was published


def test_publish_refuses_what_is_not_the_release_it_claims_to_be(
    storage: Storage, tmp_path: Path
) -> None:
    wheels = release_dir(tmp_path / "a", "0.3.0")
    with pytest.raises(ConfigError, match=r"rolecall-0.3.0-py3-none-any.whl is rolecall 0.3.0, "
                                          r"not 0.3.1"):  # fmt: skip
        publish_release(storage, wheels, "0.3.1")
    old = fake_agent_wheel(tmp_path / "old", "0.1.5", contract=(1, 2))
    with pytest.raises(ConfigError, match=r"speaks contract 1\.2; agents before contract 1\.3"):
        publish_release(storage, old.parent, "0.1.5")
    (tmp_path / "none").mkdir()
    with pytest.raises(ConfigError, match="no wheels"):
        publish_release(storage, tmp_path / "none", "0.3.0")
    with pytest.raises(InvalidName, match=r"agent version '\.\./x' must start with a digit"):
        publish_release(storage, wheels, "../x")


def test_a_version_is_published_once(storage: Storage, tmp_path: Path) -> None:
    first, new = publish_release(storage, release_dir(tmp_path / "a", "0.3.0"), "0.3.0")
    again, new_again = publish_release(storage, release_dir(tmp_path / "b", "0.3.0"), "0.3.0")
    assert (new, new_again) == (True, False) and again.sha256 == first.sha256
    other = release_dir(tmp_path / "c", "0.3.0", extra=b"another dependency")
    with pytest.raises(ConfigError, match=r"agent 0\.3\.0 was published with other wheels on"):
        publish_release(storage, other, "0.3.0")
    assert find_release(storage, "0.3.0").sha256 == first.sha256


# --- what agents refuse ------------------------------------------------------------------


class Unwatched:
    def tick(self) -> None:
        return None

    def should_kill(self) -> bool:
        return False


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Signer, Path]:
    public, _ = generate(tmp_path / "k.key")
    signer = load_signer(tmp_path / "k.key")
    assert signer is not None
    return signer, public


def updater(settings: StorageSettings, tmp_path: Path, trusted: list[Path]) -> SelfUpdate:
    """The running agent's self-update, in a side-by-side install root of its own."""
    root = tmp_path / "opt-rolecall"
    (root / "versions" / __version__).mkdir(parents=True)
    launch.write_state(root, {"current": __version__, "python": "python3"})
    worker = WorkerSettings(
        connection_string=settings.connection_string, namespace=settings.namespace,
        role="web", instance="vm-1", state_dir=tmp_path / "state", trusted_keys=trusted,
    )  # fmt: skip
    storage = Storage(worker)
    return SelfUpdate(
        storage=storage, cache=PayloadCache(storage, _dir(tmp_path / "cache"), 10**8),
        verify=TrustedKeys(trusted).verify if trusted else (lambda raw, wrapped: None),
        settings=worker, identity=Identity("web", "vm-1"), work_dir=_dir(tmp_path / "work"),
        prefix=root / "versions" / __version__,
    )  # fmt: skip


def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def refused(updates: SelfUpdate, pin: AgentPin) -> str:
    with pytest.raises(AgentUpgradeFailed) as e:
        updates.install(pin, baseline=1, watch=Unwatched())
    assert updates.root is not None
    assert [p.name for p in (updates.root / "versions").iterdir()] == [__version__]
    assert updates.plan(pin, baseline=1).step is Step.REFUSED  # not again for this baseline
    assert updates.plan(pin, baseline=2).step is Step.INSTALL  # until it changes
    assert updates.state()["current"] == __version__
    return e.value.message


def test_an_agent_refuses_a_tampered_wheel(
    storage: Storage, settings: StorageSettings, tmp_path: Path, keys: tuple[Signer, Path]
) -> None:
    signer, public = keys
    found, _ = publish_release(storage, release_dir(tmp_path / "dist", "0.3.0"), "0.3.0",
                               sign=signer.sign)  # fmt: skip
    dep = next(w for w in found.release.wheels if w.filename.startswith("dep-"))
    storage.put_blob(dep.container, dep.blob, b"dependencx")  # same size, other bytes
    why = refused(updater(settings, tmp_path, [public]), found.pin)
    assert why.startswith("payload_tampered: payload sha256/") and "hashes to" in why


def test_an_agent_refuses_a_release_that_is_not_the_one_pinned_or_badly_signed(
    storage: Storage, settings: StorageSettings, tmp_path: Path, keys: tuple[Signer, Path]
) -> None:
    signer, public = keys
    found, _ = publish_release(storage, release_dir(tmp_path / "dist", "0.3.0"), "0.3.0")
    # unsigned, to an agent that trusts a key
    assert refused(updater(settings, tmp_path / "a", [public]), found.pin) == (
        "unsigned: this agent only runs signed work"
    )
    # signed by a key this agent does not trust
    other_public, _ = generate(tmp_path / "other.key")
    signed = signer.sign(found.release)
    path = Names.agent_release_blob("0.3.0")
    from rolecall.schemas.codec import encode_document

    storage.put_blob(storage.names.payloads_container, path, encode_document(signed))
    again = find_release(storage, "0.3.0")
    assert "untrusted_key" in refused(updater(settings, tmp_path / "b", [other_public]),
                                      again.pin)  # fmt: skip
    # the release document changed under a baseline's pin
    assert "the baseline pins" in refused(updater(settings, tmp_path / "c", [public]),
                                          found.pin)  # fmt: skip
    assert json.loads((tmp_path / "c" / "opt-rolecall" / "agent.json").read_text())["failed"][
        "reason"
    ].startswith("payload_tampered: agent release 0.3.0 hashes to")
