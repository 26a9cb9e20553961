"""The agent step's decisions, kept pure so that tests on Linux cover every platform: which
version to run, whether an earlier attempt rules this one out, the commands that install a
version beside the running one, and what ``agent.json`` says afterwards.

``agent.json`` and the install layout belong to the launcher (rolecall/launch.py), which
outlives every agent version it starts: these functions change the file only as it allows
(keys added, unknown keys kept). worker/self_update.py carries the decisions out.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rolecall import launch
from rolecall.schemas.agents import AgentPin
from rolecall.schemas.errors import PayloadTampered
from rolecall.schemas.jobs import PayloadRef

NOT_SIDE_BY_SIDE = "cannot self-update: not installed side by side (docs/deploy.md)"

_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+!-]*\.whl$")
#: wheel platform tags by the operating system they belong to (the last field of the name)
_OS_TAGS = {"win32": ("win",), "linux": ("linux", "manylinux", "musllinux"), "darwin": ("macosx",)}


class Step(str, Enum):
    SATISFIED = "satisfied"  # the pinned version is the one running
    CANNOT = "cannot"  # no side-by-side install to upgrade
    REFUSED = "refused"  # this version failed here before, under this baseline version
    INSTALL = "install"  # install it beside this one, check it, switch


@dataclass(frozen=True)
class Plan:
    step: Step
    #: what the baseline run is told
    reason: str = ""


def plan(
    pin: AgentPin, running: str, *, side_by_side: str | None, state: Mapping[str, Any],
    baseline: int,
) -> Plan:  # fmt: skip
    """What the agent step does. ``side_by_side``: None if this agent runs from a side-by-side
    install, else why not. An earlier failure of the pinned version rules it out until the
    baseline changes (a failure that does not say under which baseline, for good)."""
    if pin.version == running:
        since = state.get("previous")
        return Plan(
            Step.SATISFIED, f"agent {running}" + (f" (upgraded from {since})" if since else "")
        )
    if side_by_side is not None:
        return Plan(Step.CANNOT, side_by_side)
    failed = state.get("failed")
    if (
        isinstance(failed, dict)
        and failed.get("version") == pin.version
        and failed.get("baseline") in (None, baseline)
    ):
        return Plan(Step.REFUSED, str(failed.get("reason") or "failed before"))
    return Plan(Step.INSTALL)


def install_root(prefix: Path, running: str) -> Path | None:
    """The install root the running agent belongs to, if it runs from ``versions/<itself>``."""
    if prefix.name == running and prefix.parent.name == launch.VERSIONS:
        return prefix.parent.parent
    return None


def pinned(raw: bytes, role: str) -> tuple[AgentPin, int] | None:
    """The agent pin and version of ``role``'s baseline when this agent cannot otherwise read
    it (it needs a newer contract): upgrading first is how it ever will. Whoever calls this
    has checked the document's signature."""
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("role") != role:
            return None
        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            return None
        return AgentPin.model_validate(data["agent"]), version
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


# --- agent.json -------------------------------------------------------------------------------


def switched(state: Mapping[str, Any], to: str, baseline: int) -> dict[str, Any]:
    """After installing and checking ``to``: current, with this version to switch back to."""
    pending = {"version": to, "starts": 0, "baseline": baseline}
    return {**state, "current": to, "previous": state.get("current"), "pending": pending}


def checked_in(state: Mapping[str, Any], running: str) -> dict[str, Any] | None:
    """The state once ``running`` has registered and said hello, if it was pending."""
    pending = state.get("pending")
    if isinstance(pending, dict) and pending.get("version") == running:
        return {**state, "pending": None}
    return None


def failed(state: Mapping[str, Any], version: str, baseline: int, reason: str) -> dict[str, Any]:
    return {**state, "failed": {"version": version, "baseline": baseline, "reason": reason}}


def prunable(entries: Iterable[str], state: Mapping[str, Any], running: str) -> list[str]:
    """What in ``versions/`` a settled install no longer needs: every version but the current,
    the previous (what a rollback or a pin back would start) and the running one, and what
    an interrupted upgrade left. Never while an upgrade is pending."""
    if state.get("pending"):
        return []
    keep = {state.get("current"), state.get("previous"), running}
    return sorted(
        e for e in entries
        if e not in keep and (not e.startswith(".") or e.startswith(".incoming-"))
    )  # fmt: skip


# --- installing -------------------------------------------------------------------------------


def staging_dir(root: Path, version: str) -> Path:
    """Where ``version`` is built; renamed to ``versions/<version>`` once it passed its check,
    so a version directory is always complete (a crash leaves only this one behind)."""
    return root / launch.VERSIONS / f".incoming-{version}"


def wanted(wheels: Iterable[PayloadRef], platform: str) -> list[PayloadRef]:
    """The release's wheels that may install on ``platform`` (``sys.platform``): pure ones
    and this operating system's, so a release for Linux and Windows costs neither the other's
    downloads. Which of them fit this CPU and Python is pip's choice."""
    tags = _OS_TAGS.get(platform)
    if tags is None:
        return list(wheels)
    out = []
    for w in wheels:
        platforms = w.filename.removesuffix(".whl").split("-")[-1].split(".")
        if any(p == "any" or p.startswith(tags) for p in platforms):
            out.append(w)
    return out


def wheel_name(ref: PayloadRef) -> str:
    """The file name pip needs to see (it reads versions and tags from it), refused unless it
    is a plain wheel name: it is written into a directory."""
    if not _WHEEL_NAME.fullmatch(ref.filename):
        raise PayloadTampered(f"{ref.filename!r} is not a wheel file name")
    return ref.filename


def venv_command(python: str, target: Path) -> list[str]:
    return [python, "-m", "venv", str(target)]


def pip_command(target: Path, wheelhouse: Path, version: str, windows: bool) -> list[str]:
    """Offline: from the verified wheels only, never an index."""
    return [
        str(launch.venv_python(target, windows)), "-m", "pip", "install", "--no-index",
        "--find-links", str(wheelhouse), "--no-input", "--disable-pip-version-check",
        f"rolecall=={version}",
    ]  # fmt: skip


def pip_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The machine's pip settings (an index, constraints, find-links) must not change what an
    offline install of verified wheels does: no PIP_* variables, no configuration files."""
    clean = {k: v for k, v in env.items() if not k.upper().startswith("PIP_")}
    return {**clean, "PIP_CONFIG_FILE": os.devnull}


def check_args(
    *, role: str, instance: str, namespace: str, state_dir: Path, config: Path | None,
    trusted_keys: Iterable[Path], accept_unsigned: bool = False,
) -> list[str]:  # fmt: skip
    """``rolecall worker --check`` as this agent would run: its identity and the settings
    that do not come from the environment (which the check inherits)."""
    args = ["worker", "--check", "--role", role, "--instance", instance,
            "--namespace", namespace, "--state-dir", str(state_dir)]  # fmt: skip
    if config is not None:
        args += ["--config", str(config)]
    for key in trusted_keys:
        args += ["--trusted-key", str(key)]
    if accept_unsigned:  # only when set: an agent from before the option does not know it
        args.append("--accept-unsigned")
    return args
