"""The common base of every message and document on the wire."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from rolecall.schemas.names import PLAIN_ID
from rolecall.schemas.version import CONTRACT, PRE_RULES, Version, since_of

#: The contract this release speaks, on the wire (schemas/version.py has the rules).
SCHEMA_VERSION = CONTRACT.wire()

#: Bounded output tails keep a completion far below the 64 KiB queue message limit even when
#: several completions share one events message.
TAIL_CHARS = 2048
#: The most a job's log blob holds (worker/joblog.py keeps a head and a tail of each stream
#: within it); the controller refuses to serve a log blob larger than this.
LOG_MAX_BYTES = 8 * 1024 * 1024

Timestamp = AwareDatetime
Name = Annotated[str, Field(min_length=1, max_length=256)]


def _plain_id(value: str) -> str:
    if not PLAIN_ID.match(value):
        raise ValueError("not a plain id (letters, digits, . _ -; no '..', nothing else)")
    return value


#: A run or job id: it reaches storage paths, so it is checked wherever it is decoded.
Id = Annotated[str, AfterValidator(_plain_id)]
Digest = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Contract(BaseModel):
    """Every message and document. Tolerant, by the rules in schemas/version.py: a field this
    release does not know is kept (and written back when the document is rewritten) and
    otherwise ignored; ``schema_version`` is written as the lowest version a reader needs."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    schema_version: int | str = PRE_RULES.wire()

    #: per class: (field name, the version it raises a message to when set)
    _critical_fields: ClassVar[tuple[tuple[str, Version], ...] | None] = None

    @field_validator("schema_version")
    @classmethod
    def _known_form(cls, v: int | str) -> int | str:
        return Version.parse(v).wire()

    def required_version(self) -> Version:
        """The lowest contract version a reader must speak to act on this: the highest
        ``Since(critical=True)`` among the fields set, here and in nested documents, and never
        less than the version it was read with (a rewrite keeps what it carried)."""
        need = Version.parse(self.schema_version)
        for name, version in self._critical():
            if version > need and getattr(self, name) is not None:
                need = version
        for value in self.__dict__.values():
            for nested in _contracts_in(value):
                need = max(need, nested.required_version())
        return need

    @classmethod
    def _critical(cls) -> tuple[tuple[str, Version], ...]:
        if cls.__dict__.get("_critical_fields") is None:
            found = []
            for name, field in cls.model_fields.items():
                since = since_of(field.metadata)
                if since is not None and since.critical:
                    found.append((name, since.parsed))
            cls._critical_fields = tuple(found)
        return cls._critical_fields or ()

    @model_serializer(mode="wrap")
    def _versioned(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and "schema_version" in data:
            data["schema_version"] = self.required_version().wire()
        return data


def _contracts_in(value: object) -> list[Contract]:
    if isinstance(value, Contract):
        return [value]
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, Contract)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, Contract)]
    return []


def tail(text: str, limit: int = TAIL_CHARS) -> str:
    """The last ``limit`` characters, which is where a failing script says why."""
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]
