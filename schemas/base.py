"""The common base of every message and document on the wire."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

#: Bumped only for incompatible changes; a worker refuses (poisons) versions it does not know.
SCHEMA_VERSION = 1

#: Bounded output tails keep a completion far below the 64 KiB queue message limit even when
#: several completions share one events message.
TAIL_CHARS = 2048

Timestamp = AwareDatetime
Name = Annotated[str, Field(min_length=1, max_length=256)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Contract(BaseModel):
    """Strict: an unknown field means the sender speaks another contract, so refuse it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: int = SCHEMA_VERSION


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters, which is where a failing script says why."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
