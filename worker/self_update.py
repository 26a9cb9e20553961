"""The agent step, carried out: install the pinned agent version beside this one, check it,
switch to it; or report why not. The decisions are worker/upgrade.py's.

Installing, in order, each step refusing what it cannot trust:

1. the release document, whose SHA-256 the (signed) baseline pins, and whose own signature is
   checked where trusted keys are configured;
2. each wheel this platform can use, through the payload cache, which checks size and
   SHA-256 before anything is stored;
3. ``python -m venv versions/.incoming-<V>`` with the base interpreter, then
   ``pip install --no-index --find-links <the verified wheels> rolecall==<V>``, isolated from
   the machine's pip settings;
4. ``rolecall worker --check`` from the new venv with this agent's settings (it claims
   nothing), and only then the rename to ``versions/<V>`` and ``agent.json`` saying
   current=V, pending.

The agent then exits with ExitCode.UPGRADING and the service manager starts the launcher,
which runs V and switches back by itself if V does not check in (rolecall/launch.py). The
slow parts run as child processes under the agent's watch, so heartbeats go on meanwhile and
a shutdown stops them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from rolecall import __version__, launch
from rolecall.schemas.agents import AgentPin, AgentRelease
from rolecall.schemas.codec import decode_document
from rolecall.schemas.errors import (
    AgentUpgradeFailed,
    ContractError,
    NotFound,
    PayloadError,
    PayloadTampered,
    RolecallError,
    SignatureError,
)
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from rolecall.worker import executor, upgrade
from rolecall.worker.commands import Command
from rolecall.worker.config import WorkerSettings
from rolecall.worker.identity import Identity
from rolecall.worker.payloads import PayloadCache
from rolecall.worker.trust import Verify

log = logging.getLogger(__name__)

WINDOWS = sys.platform == "win32"
#: generous: a slow disk and a large wheel set, but never forever
VENV_TIMEOUT_S, PIP_TIMEOUT_S, CHECK_TIMEOUT_S = 300.0, 900.0, 300.0
#: what rules a version out until the baseline changes; anything else (storage, a shutdown)
#: is tried again later
_FOR_GOOD = (AgentUpgradeFailed, PayloadError, SignatureError, ContractError)


class Interrupted(RolecallError):
    """The agent is shutting down: the install stopped, nothing is recorded against it."""

    reason = "interrupted"


class SelfUpdate:
    def __init__(
        self,
        *,
        storage: Storage,
        cache: PayloadCache,
        verify: Verify,
        settings: WorkerSettings,
        identity: Identity,
        work_dir: Path,
        prefix: Path | None = None,
    ) -> None:
        self.storage = storage
        self.cache = cache
        self.verify = verify
        self.settings = settings
        self.identity = identity
        self.work_dir = work_dir
        self.root = upgrade.install_root(Path(prefix or sys.prefix), __version__)
        if self.root is not None and not (self.root / launch.STATE_FILE).is_file():
            self.root = None

    @property
    def side_by_side(self) -> str | None:
        """None if this agent can upgrade itself, else why not."""
        return None if self.root is not None else upgrade.NOT_SIDE_BY_SIDE

    def state(self) -> dict[str, Any]:
        if self.root is None:
            return {}
        try:
            return launch.read_state(self.root)
        except launch.BadState as e:
            raise AgentUpgradeFailed(str(e)) from e

    def write(self, state: dict[str, Any]) -> None:
        assert self.root is not None
        launch.write_state(self.root, state)

    def check_in(self) -> None:
        """Called once this agent has registered and said hello: if it was the pending
        version, the upgrade is confirmed and the launcher stops watching it."""
        if self.root is None:
            return
        try:
            state = self.state()
            confirmed = upgrade.checked_in(state, __version__)
            if confirmed is not None:
                self.write(confirmed)
        except (AgentUpgradeFailed, OSError) as e:
            # the launcher will switch back, as it should: this agent cannot be confirmed
            log.error("cannot confirm this agent version in agent.json: %s", e)
            return
        if confirmed is not None:
            log.info("agent %s checked in (upgraded from %s)", __version__, state.get("previous"))
        self._prune(confirmed or state)

    def _prune(self, state: dict[str, Any]) -> None:
        """Versions neither current nor previous go: a long-lived machine upgraded every
        month would otherwise keep every venv it ever had."""
        assert self.root is not None
        versions = self.root / launch.VERSIONS
        try:
            entries = [p.name for p in versions.iterdir()]
        except OSError as e:
            log.warning("cannot list %s: %s", versions, e)
            return
        for name in upgrade.prunable(entries, state, __version__):
            log.info("removing agent version %s (neither current nor previous)", name)
            shutil.rmtree(versions / name, ignore_errors=True)

    def plan(self, pin: AgentPin, baseline: int) -> upgrade.Plan:
        return upgrade.plan(
            pin, __version__, side_by_side=self.side_by_side, state=self.state(),
            baseline=baseline,
        )  # fmt: skip

    def install(self, pin: AgentPin, baseline: int, watch: executor.Watch) -> None:
        """Install, check and switch to ``pin``; AgentUpgradeFailed (recorded, so it is not
        tried again under this baseline version) or a StorageError (try again later)."""
        assert self.root is not None
        try:
            release = self.fetch(pin)
            target = launch.version_dir(self.root, pin.version)
            if launch.venv_python(target, WINDOWS).exists():
                self._check(target, watch)  # installed before (a downgrade, a retry)
            else:
                self._build(release, watch)
            self.write(upgrade.switched(self.state(), pin.version, baseline))
        except (*_FOR_GOOD, OSError) as e:
            why = _why(e)
            with contextlib.suppress(AgentUpgradeFailed, OSError):
                self.write(upgrade.failed(self.state(), pin.version, baseline, why))
            raise AgentUpgradeFailed(why) from e
        log.warning("agent %s installed and checked; restarting into it", pin.version)

    def fetch(self, pin: AgentPin) -> AgentRelease:
        """The pinned release, verified: digest, signature, version."""
        container, path = (
            self.storage.names.payloads_container,
            Names.agent_release_blob(pin.version),
        )
        try:
            raw = self.storage.get_blob(container, path).data
        except NotFound:
            raise AgentUpgradeFailed(f"agent {pin.version} is not published") from None
        digest = hashlib.sha256(raw).hexdigest()
        if digest != pin.release_sha256:
            raise PayloadTampered(
                f"agent release {pin.version} hashes to {digest[:16]}…; the baseline pins "
                f"{pin.release_sha256[:16]}…"
            )
        release = decode_document(raw, AgentRelease)
        self.verify(raw, False)
        if release.version != pin.version:
            raise PayloadTampered(f"the release at {path} is of version {release.version}")
        return release

    def _build(self, release: AgentRelease, watch: executor.Watch) -> None:
        """Verified wheels into a wheelhouse, a venv beside the others, pip, rename."""
        assert self.root is not None
        wheels = upgrade.wanted(release.wheels, sys.platform)
        house = self.work_dir / f"wheels-{release.version}"
        shutil.rmtree(house, ignore_errors=True)
        house.mkdir(parents=True)
        for ref in wheels:
            shutil.copyfile(self.cache.fetch(ref), house / upgrade.wheel_name(ref))
        staging = upgrade.staging_dir(self.root, release.version)
        shutil.rmtree(staging, ignore_errors=True)  # a crash's leftovers
        python = str(self.state().get("python") or getattr(sys, "_base_executable", ""))
        try:
            self._run("python -m venv", upgrade.venv_command(python, staging), VENV_TIMEOUT_S,
                      watch)  # fmt: skip
            pip = upgrade.pip_command(staging, house, release.version, WINDOWS)
            self._run("pip install", pip, PIP_TIMEOUT_S, watch, upgrade.pip_environment(os.environ))
            self._check(staging, watch)
            os.replace(staging, launch.version_dir(self.root, release.version))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(house, ignore_errors=True)

    def _check(self, venv: Path, watch: executor.Watch) -> None:
        s, who = self.settings, self.identity
        args = upgrade.check_args(
            role=who.role, instance=who.instance, namespace=s.namespace,
            state_dir=s.state_dir, config=s.config_file, trusted_keys=s.trusted_keys,
            accept_unsigned=s.accept_unsigned,
        )  # fmt: skip
        command = launch.rolecall_command(venv, args, WINDOWS)
        self._run("rolecall worker --check", command, CHECK_TIMEOUT_S, watch)

    def _run(
        self, what: str, command: list[str], timeout_s: float, watch: executor.Watch,
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            r = executor.run(
                Command(command), cwd=self.work_dir, stdout=out, stderr=err,
                env=os.environ if env is None else env, timeout_s=timeout_s, watch=watch,
            )  # fmt: skip
            if r.exit_code == 0:
                return
            if r.killed:
                raise Interrupted(f"{what} stopped: the agent is shutting down")
            out.seek(0)
            err.seek(0)
            said = (err.read() or out.read()).decode("utf-8", "replace").strip().splitlines()
        why = "timed out" if r.timed_out else f"exit {r.exit_code}"
        raise AgentUpgradeFailed(f"{what} failed ({why}): {said[-1][:300] if said else ''}")


def _why(e: Exception) -> str:
    if isinstance(e, AgentUpgradeFailed):
        return e.message
    if isinstance(e, RolecallError):
        return e.message if e.message.startswith(e.reason) else f"{e.reason}: {e.message}"
    return f"cannot install: {e}"
