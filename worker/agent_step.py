"""The baseline's agent step: before its steps, make the pinned agent version the one running.

Applied first because the rest of the baseline is meant to run under the agent the operator
chose. When this agent cannot get there (not installed side by side, a release that fails
verification, an install or check that fails, an upgrade that was rolled back) it says so in
the baseline run, once, and applies the rest itself: an instance configured by an older agent
is better than one left unconfigured. What it must not do is try the same failing version
again and again: that waits for the baseline to change (worker/upgrade.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rolecall import __version__
from rolecall.schemas.agents import AgentPin
from rolecall.schemas.errors import AgentUpgradeFailed, StorageError
from rolecall.schemas.events import Outcome
from rolecall.worker import executor
from rolecall.worker.self_update import Interrupted, SelfUpdate
from rolecall.worker.upgrade import Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    #: installed and switched: exit, and the service manager restarts into it
    upgrade: bool = False
    #: storage failed or the agent is stopping: apply the baseline again soon (UNREADABLE)
    retry: bool = False
    #: what the baseline run is told (None: nothing)
    outcome: Outcome | None = None
    message: str = ""


class AgentStep:
    def __init__(self, updates: SelfUpdate, watch: executor.Watch) -> None:
        self.updates = updates
        self.watch = watch

    def apply(self, pin: AgentPin, baseline: int) -> Verdict:
        try:
            plan = self.updates.plan(pin, baseline)
        except AgentUpgradeFailed as e:  # agent.json unreadable: the launcher will say so too
            return Verdict(outcome=Outcome.FAILED, message=e.message)
        if plan.step is Step.SATISFIED:
            return Verdict(outcome=Outcome.SUCCEEDED, message=plan.reason)
        if plan.step is not Step.INSTALL:
            return Verdict(outcome=Outcome.FAILED, message=plan.reason)
        log.warning("baseline v%d pins agent %s; installing it beside %s", baseline,
                    pin.version, __version__)  # fmt: skip
        try:
            self.updates.install(pin, baseline, self.watch)
        except AgentUpgradeFailed as e:
            log.error("agent %s: %s; carrying on as %s", pin.version, e.message, __version__)
            return Verdict(outcome=Outcome.FAILED, message=e.message)
        except (StorageError, Interrupted) as e:
            log.warning("agent %s not installed yet: %s", pin.version, e.message)
            return Verdict(retry=True)
        return Verdict(upgrade=True)
