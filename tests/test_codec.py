"""The wire codec: round trips, the 64 KiB limit, and a typed, useful error for bad input."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import BaseModel

from rolecall.schemas import EventBatch, JobEnvelope, decode_message, encode_message
from rolecall.schemas.codec import (
    MAX_MESSAGE_BYTES,
    decode_document,
    encode_document,
    encode_message_data,
)
from rolecall.schemas.errors import ContractError, MessageTooLarge, UnknownSchemaVersion
from tests.factories import completion, every_model, job


@pytest.mark.parametrize("model", every_model(), ids=lambda m: type(m).__name__)
def test_every_model_round_trips_as_message_and_document(model: BaseModel) -> None:
    cls = type(model)
    assert decode_message(encode_message(model), cls) == model
    assert decode_document(encode_document(model), cls) == model


def test_messages_are_base64_json_readable_by_other_tools() -> None:
    text = encode_message(job())
    data = json.loads(base64.b64decode(text))
    assert data["kind"] == "job" and data["schema_version"] == 1


def test_message_over_64k_is_refused_with_its_size() -> None:
    big = EventBatch(sender="w", events=[completion(stdout_tail="x" * 2000)] * 40)
    with pytest.raises(MessageTooLarge) as e:
        encode_message(big)
    assert "65,536" in str(e.value) and "bytes encoded" in str(e.value)


def test_message_just_under_the_limit_is_accepted() -> None:
    events = []
    while True:
        events.append(completion(stdout_tail="y" * 2000))
        try:
            text = encode_message(EventBatch(sender="w", events=events))
        except MessageTooLarge:
            break
        assert len(text) <= MAX_MESSAGE_BYTES


def test_a_message_built_as_json_is_encoded_like_its_model() -> None:
    model = job()
    data = model.model_dump(mode="json", exclude_none=True)
    assert encode_message_data(data) == encode_message(model)
    with pytest.raises(MessageTooLarge) as e:
        encode_message_data({**data, "padding": "é" * MAX_MESSAGE_BYTES}, "job for web-0")
    assert str(e.value).startswith("job for web-0 is ") and "65,536" in str(e.value)


def b64(obj: object) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.b64encode(raw).decode()


GOOD = json.loads(job().model_dump_json())

MALFORMED = {
    "not base64": ("%%% not base64 %%%", "not base64"),
    "not utf-8": (b64(b"\xff\xfe\x00"), "not UTF-8"),
    "not json": (b64(b"{nope"), "not JSON"),
    "json array": (b64([1, 2]), "not an object"),
    "no schema_version": (
        b64({k: v for k, v in GOOD.items() if k != "schema_version"}),
        "no schema_version",
    ),
    "wrong kind": (b64({**GOOD, "kind": "completion"}), "expected a 'job' message"),
    "missing field": (b64({k: v for k, v in GOOD.items() if k != "role"}), "role"),
    # an unknown field alone is ignored (schemas/version.py); a newer minor is refused
    "needs a newer minor": (b64({**GOOD, "schema_version": "1.99"}), "needs contract 1.99"),
    "not a version": (b64({**GOOD, "schema_version": "one"}), "is not a version"),
    "bad digest": (b64({**GOOD, "payload": {**GOOD["payload"], "sha256": "zz"}}), "sha256"),
    "run without payload": (b64({**GOOD, "payload": None}), "payload"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_input_gives_a_typed_error_with_a_reason(name: str) -> None:
    text, expected = MALFORMED[name]
    with pytest.raises(ContractError) as e:
        decode_message(text, JobEnvelope)
    assert expected in str(e.value)
    assert e.value.reason


def test_unknown_schema_version_has_its_own_error() -> None:
    with pytest.raises(UnknownSchemaVersion) as e:
        decode_message(b64({**GOOD, "schema_version": 99}), JobEnvelope)
    assert "99" in str(e.value) and e.value.reason == "unknown_schema_version"
