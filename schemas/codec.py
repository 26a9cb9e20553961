"""Encoding of queue messages and blob documents.

Queue messages are base64-encoded UTF-8 JSON: the Azure Functions and portal convention, so
other tools (Storage Explorer, a Functions trigger) can read them. Decoding anything that is
not a valid contract raises :class:`~schemas.errors.ContractError` with a reason a human can
act on; the worker poisons such messages rather than retrying them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from rolecall.schemas.errors import (
    ContractError,
    MessageTooLarge,
    RequiresNewerAgent,
    UnknownSchemaVersion,
)
from rolecall.schemas.version import CONTRACT, Version

#: Azure Storage queues refuse messages over 64 KiB (the encoded text as sent).
MAX_MESSAGE_BYTES = 64 * 1024

M = TypeVar("M", bound=BaseModel)

_OWN_MAJOR = frozenset({CONTRACT.major})


def canonical_json(model: BaseModel, *, exclude: set[str] | None = None) -> bytes:
    """Stable bytes for hashing and signing: sorted keys, no whitespace, no nulls dropped."""
    data = model.model_dump(mode="json", exclude=exclude)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def encode_message(model: BaseModel) -> str:
    # pydantic's own serialiser: half the time of dumping to a dict and then to JSON
    return _wrap(model.model_dump_json(exclude_none=True).encode(), type(model).__name__)


def encode_message_data(data: Mapping[str, Any], what: str = "message") -> str:
    """Encode a document already in its JSON form, as :func:`encode_message` does a model.

    For senders that build many messages from one validated template (a fan-out to a
    thousand targets) and must not pay for a model per message. ``what`` names the message
    in the error if it is too large.
    """
    return _wrap(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(), what)


def _wrap(raw: bytes, what: str) -> str:
    """Base64 of the JSON bytes, refused past the queue's limit."""
    text = base64.b64encode(raw).decode("ascii")
    if len(text) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(
            f"{what} is {len(text):,} bytes encoded; the queue limit is "
            f"{MAX_MESSAGE_BYTES:,} bytes (65,536)"
        )
    return text


#: A report batch this small travels in its blob's metadata (8 KiB at most, ASCII): the
#: controller then reads a thousand reports with one List Blobs call and no reads at all.
REPORT_INLINE_BYTES = 6000
#: Larger reports are the blob's body, up to the size of a queue message; bigger is refused.
REPORT_MAX_BYTES = MAX_MESSAGE_BYTES


def report_parts(data: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """(body, metadata) of a report blob holding the batch ``data``."""
    text = encode_message_data(data, "report batch")  # base64, bounded like a message
    if len(text) <= REPORT_INLINE_BYTES:
        return b"", {"batch": text}
    return base64.b64decode(text), {}


def report_text(body: bytes, metadata: Mapping[str, str]) -> str:
    """The base64 batch a report blob holds, however it was stored."""
    inline = metadata.get("batch")
    if inline:
        return inline
    return base64.b64encode(body).decode("ascii")


def decode_message(text: str | bytes, model: type[M], majors: frozenset[int] = _OWN_MAJOR) -> M:
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as e:
            raise ContractError("message is not base64 text (non-ASCII bytes)") from e
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ContractError(f"message is not base64: {e}") from e
    return decode_document(raw, model, majors)


def encode_document(model: BaseModel) -> bytes:
    return model.model_dump_json(exclude_none=True, indent=1).encode()


def read_json(raw: bytes | str) -> Any:
    """Parse JSON from anyone, mapping every way it can fail to ContractError: bad UTF-8,
    bad JSON, and nesting deep enough to exhaust the parser's recursion (20,000 brackets
    are 53 kB encoded, well inside a queue message)."""
    try:
        return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as e:
        raise ContractError("message is not UTF-8") from e
    except json.JSONDecodeError as e:
        raise ContractError(f"message is not JSON: {e.msg} at offset {e.pos}") from e
    except RecursionError as e:
        raise ContractError("message is nested too deeply to read", reason="too_deep") from e


def read_b64_json(text: str | bytes) -> Any:
    """:func:`read_json` of base64 text (a queue message)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ContractError(f"message is not base64: {e}") from e
    return read_json(raw)


def decode_document(raw: bytes, model: type[M], majors: frozenset[int] = _OWN_MAJOR) -> M:
    """Decode JSON bytes into ``model``, checking version and kind before the fields.

    ``majors``: the contract majors this reader accepts; the controller passes
    ``SUPPORTED_MAJORS`` for reports, everything else reads its own major only."""
    data = read_json(raw)
    if not isinstance(data, dict):
        raise ContractError(f"message is JSON {type(data).__name__}, not an object")
    version = data.get("schema_version")
    if version is None:
        raise ContractError("message has no schema_version")
    check_readable(Version.parse(version), majors)
    expected = model.model_fields.get("kind")
    if expected is not None and data.get("kind") != expected.default:
        raise ContractError(
            f"expected a {expected.default!r} message, got kind={data.get('kind')!r}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ContractError(f"{model.__name__} is invalid: {summarise(e)}") from e


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,255}$")


def job_ids_of(text: str) -> tuple[str, str] | None:
    """The (job id, run id) a job message names, read without trusting the rest: so a job
    refused as unreadable (too new, malformed) can still be reported against its run.
    Only ids of the plain form rolecall makes are returned."""
    try:
        data = read_b64_json(text)
    except ContractError:
        return None
    if not isinstance(data, dict) or data.get("kind") != "job":
        return None
    job_id, run_id = data.get("job_id"), data.get("run_id")
    if (
        isinstance(job_id, str)
        and isinstance(run_id, str)
        and _ID.match(job_id)
        and (_ID.match(run_id))
    ):
        return job_id, run_id
    return None


def check_readable(version: Version, majors: frozenset[int] = _OWN_MAJOR) -> None:
    """Refuse what this reader cannot act on (the rules are in schemas/version.py)."""
    if version.major not in majors:
        raise UnknownSchemaVersion(
            f"schema_version {version} is not supported (this rolecall speaks contract "
            f"{CONTRACT}; it reads majors {', '.join(map(str, sorted(majors)))})"
        )
    if version.major == CONTRACT.major and version > CONTRACT:
        raise RequiresNewerAgent(
            f"needs contract {version}; this rolecall speaks {CONTRACT}: upgrade it "
            "(docs/deploy.md, upgrading agents)"
        )


def summarise(e: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in e.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    more = e.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
