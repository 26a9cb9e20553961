"""A role's baseline: the ordered steps every incarnation of the role must have applied.

The worker reads it from blob storage at boot, so a reimaged instance configures itself with
no controller running. Steps are remembered per incarnation by *fingerprint* (payload digest
plus how it runs), not by position: publishing a new version re-runs only what changed.

A baseline may also pin an agent version (``agent``, schemas/agents.py): the agent step, which
an older agent applies first (it installs that version beside itself and restarts into it),
so that the steps run under the agent the operator chose.
"""

from __future__ import annotations

import hashlib
import json
from enum import Enum
from typing import Annotated, Literal

from pydantic import Field

from rolecall.schemas.agents import AgentPin
from rolecall.schemas.base import Contract, Name, Timestamp
from rolecall.schemas.jobs import Execution, PayloadRef, Signature
from rolecall.schemas.version import Since

#: The step index an agent step's completion carries: it comes before step 0, and a
#: controller of any version folds it as one more step of the baseline run.
AGENT_STEP = -1


class RebootPolicy(str, Enum):
    #: exit 3010 (Windows) or 194 (Linux) means "done, reboot before the next step"
    IF_REQUIRED = "if_required"
    #: reboot codes are treated as plain success
    NEVER = "never"


class Step(Contract):
    name: Name
    payload: PayloadRef
    execution: Execution = Field(default_factory=Execution)
    timeout_s: float = Field(default=600.0, gt=0, le=7 * 24 * 3600)
    reboot: RebootPolicy = RebootPolicy.IF_REQUIRED

    @property
    def fingerprint(self) -> str:
        """Identity of what the step does; the name is only a label."""
        body = {
            "sha256": self.payload.sha256,
            "kind": self.payload.kind.value,
            "filename": self.payload.filename,
            "execution": self.execution.model_dump(mode="json"),
            "reboot": self.reboot.value,
        }
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


class Baseline(Contract):
    kind: Literal["baseline"] = "baseline"
    role: Name
    version: int = Field(ge=1)
    steps: list[Step] = Field(default_factory=list, max_length=100)
    updated_at: Timestamp
    issuer: str = Field(default="rolecall", max_length=128)
    signature: Signature | None = None
    #: critical: an agent that cannot follow the pin must not run the steps as if it had
    agent: Annotated[AgentPin | None, Since("1.3", critical=True)] = None
    #: an operator-signed rollback (``baseline set --rollback``): instances that took versions
    #: up to this one take this baseline although its version is lower (worker/forward.py).
    #: Critical: an agent that ignored it would judge the version as if there were none
    rollback: Annotated[int | None, Since("1.4", critical=True)] = None

    @property
    def steps_total(self) -> int:
        """Steps as a baseline run counts them: the agent step is one when there is a pin."""
        return len(self.steps) + (self.agent is not None)
