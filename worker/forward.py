"""Baselines only move forward (issue 15, finding 5).

A baseline is signed, but a signature says who wrote it, not that it is the latest: whoever
may write the state container could put the signed v1 back over v2, and every instance that
reads it would apply v1 again. So each instance keeps a high-water mark, the highest version it
has taken, and refuses a lower one (reason ``rollback``, in its log and its instance record's
``baseline_failure``). The mark is kept on disk and in the instance record; after a reimage
wipes the disk, the agent recovers it from the record it held before (worker/registration.py:
what the storage account knows, not the wiped disk).

Going back on purpose is the operator's signed word: a baseline whose ``rollback`` is at least
the mark is taken although its version is lower (``rolecall baseline set --rollback``, for a
baseline blob deleted or overwritten), and the mark stays where it was, so the baseline before
the rollback cannot be put back either. A brand-new instance name has no mark: it takes
whatever signed baseline it finds (docs/security.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from rolecall.schemas.baseline import Baseline
from rolecall.schemas.errors import ContractError
from rolecall.worker.state import LocalState

log = logging.getLogger(__name__)


class HighWater:
    def __init__(self, state: LocalState) -> None:
        self.state = state
        self.mark = max(state.baseline_high_water or 0, state.baseline_version or 0)

    def recover(self, versions: Iterable[int | None]) -> None:
        """Raise the mark to what the previous instance record says was taken."""
        known = max((v for v in versions if v), default=0)
        if known > self.mark:
            log.info("baseline high-water mark v%d recovered from the instance record", known)
            self._set(known)

    def check(self, baseline: Baseline) -> None:
        """ContractError (reason ``rollback``) for a version below the mark, unless the
        baseline is a signed rollback reaching it."""
        if baseline.version >= self.mark or (baseline.rollback or 0) >= self.mark:
            return
        raise ContractError(
            f"baseline v{baseline.version} is older than v{self.mark}, which this instance has "
            "taken: an old baseline put back? (`rolecall baseline set --rollback` publishes one "
            "instances take)",
            reason="rollback",
        )

    def taken(self, baseline: Baseline) -> None:
        mark = max(self.mark, baseline.version, baseline.rollback or 0)
        if mark != self.mark or self.state.baseline_high_water != mark:
            self._set(mark)

    def _set(self, mark: int) -> None:
        self.mark = mark
        self.state.baseline_high_water = mark
