"""Version skew between a job and the agents that would run it.

Images lag, so a fleet runs several agent versions at once. A job needs the contract version
its fields require (``JobEnvelope.required_version()``); an agent whose contract is older
refuses it (``requires_newer_agent``) rather than run it half-understood. ``rolecall run``
asks before sending: targets whose agents cannot read the job are either skipped with that
reason, or the run stops, as the operator chooses (``--too-old skip|stop``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from rolecall.controller.fleet import InstanceSummary
from rolecall.schemas.errors import RolecallError
from rolecall.schemas.version import Version


class TooOld(str, Enum):
    STOP = "stop"
    SKIP = "skip"


class AgentsTooOld(RolecallError):
    reason = "agent_too_old"


def too_old(instances: Iterable[InstanceSummary], required: Version) -> dict[str, str]:
    """Instance name -> why it cannot read a job that needs ``required``."""
    return {
        s.instance: (
            f"agent_too_old: agent {s.agent_version or '(before 0.2)'} speaks contract "
            f"{s.contract}; the job needs {required}"
        )
        for s in instances
        if not s.can_read(required)
    }


def refusal(old: dict[str, str], required: Version, *, any_instance: bool) -> AgentsTooOld:
    """The one-line error ``run`` stops with."""
    shown = ", ".join(sorted(old)[:5]) + (f" and {len(old) - 5} more" if len(old) > 5 else "")
    fix = (
        "upgrade their agents (docs/deploy.md, upgrading agents)"
        if any_instance
        else "upgrade their agents (docs/deploy.md, upgrading agents) or pass --too-old skip"
    )
    return AgentsTooOld(
        f"{len(old)} instance(s) run agents that cannot read this job (it needs contract "
        f"{required}): {shown}; {fix}"
    )
