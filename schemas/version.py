"""The contract's version, and the rules by which it changes (docs/architecture.md,
"Changing the contract").

Images lag: an agent baked into an image comes back after every reimage, for as long as the
image lives, while operators upgrade their controller. So the wire contract changes only
under these rules:

* A version is ``major.minor``. On the wire it is the string ``"M.m"``; ``M.0`` is written as
  the integer ``M``, which is what agents from before these rules read and write, so they
  keep understanding every message that needs nothing newer.
* A message's ``schema_version`` is the **lowest version a reader must speak to act on it**,
  not the sender's own: the sender computes it from the fields it set (``required_version``).
* Additive changes (a new optional field) bump the minor. A reader ignores fields it does not
  know (and carries them through when it rewrites a document), which is safe because a
  signature covers the message as sent, not as a reader re-serialises it.
* A field an older reader must not ignore is marked ``Since("M.m", critical=True)``: setting
  it raises the message's version to ``M.m``, and a reader of a lower minor refuses the
  message with reason ``requires_newer_agent`` instead of running it half-understood.
* A reader refuses another major outright (``unknown_schema_version``), except the
  controller, which folds reports from every major in ``SUPPORTED_MAJORS``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from rolecall.schemas.errors import ContractError

_WIRE = re.compile(r"^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int

    @classmethod
    def parse(cls, raw: object) -> Version:
        """Read a wire version: the integer ``M`` (``M.0``) or the string ``"M.m"``."""
        if isinstance(raw, bool):
            raise ContractError(f"schema_version {raw!r} is not a version")
        if isinstance(raw, int) and 0 <= raw <= 9999:
            return cls(raw, 0)
        if isinstance(raw, str) and (m := _WIRE.match(raw)):
            return cls(int(m.group(1)), int(m.group(2)))
        raise ContractError(f'schema_version {raw!r} is not a version ("major.minor")')

    def wire(self) -> int | str:
        return self.major if self.minor == 0 else str(self)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)


#: The contract this release speaks. 1.0 is the contract of the agents from before these rules;
#: 1.1 adds the rules themselves (tolerant readers, required versions) and the agent version
#: and contract in instance records; 1.2 adds per-role results queues with started notes and
#: signed batches, cancel jobs, and run records kept apart from their results; 1.3 adds agent
#: releases and the baseline's agent pin (critical), with which agents upgrade themselves
#: (docs/deploy.md, upgrading agents); 1.4 adds to instance records who holds the name (host,
#: process), the failing baseline step, the instance's recent jobs and applied baselines, the
#: agent's storage transactions by operation and failed attempts by kind, and whether it
#: accepts unsigned jobs (all optional: older readers ignore them); to completions the bytes a
#: log left out (``log_cut_bytes``); and to jobs the send time that binds a signed job to its
#: queue message (``sent_at``) and sealed secrets (``sealed_env``, critical: an older agent
#: refuses the job); to baselines an operator-signed rollback (``rollback``, critical), and
#: to instance records the highest baseline version taken (``baseline_high_water``).
CONTRACT = Version(1, 4)

#: Majors whose reports (hellos, completions, instance records) the controller folds: the
#: current one and the one before it, once there is one.
SUPPORTED_MAJORS = frozenset({CONTRACT.major})

#: What agents from before these rules speak (their records carry no contract at all).
PRE_RULES = Version(1, 0)


@dataclass(frozen=True)
class Since:
    """Marks a field added after 1.0 (``Annotated[T, Since("1.2")]``). ``critical``: a reader
    that does not know the field must refuse the message rather than ignore the field."""

    version: str
    critical: bool = False

    @property
    def parsed(self) -> Version:
        return Version.parse(self.version)


def since_of(metadata: list[Any]) -> Since | None:
    return next((m for m in metadata if isinstance(m, Since)), None)
