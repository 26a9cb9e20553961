"""The contract's evolution rules (schemas/version.py), without storage: versions, tolerant
readers, required versions, and signatures that survive fields a reader does not know."""

from __future__ import annotations

import base64
import json
import string
from typing import Annotated, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rolecall.controller.signing import Signer, generate, load_signer
from rolecall.schemas import (
    Completion,
    EventBatch,
    Execution,
    Hello,
    JobEnvelope,
    Outcome,
    PayloadRef,
    Target,
    decode_message,
    encode_message,
    utcnow,
)
from rolecall.schemas.base import Contract
from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.errors import (
    ContractError,
    RequiresNewerAgent,
    SignatureError,
    UnknownSchemaVersion,
)
from rolecall.schemas.jobs import EnvVar
from rolecall.schemas.signing import canonical_bytes
from rolecall.schemas.version import CONTRACT, SUPPORTED_MAJORS, Since, Version
from rolecall.worker.trust import TrustedKeys

names = st.text(string.ascii_letters + string.digits + "-_.", min_size=1, max_size=40)
#: run and job ids reach storage paths: plain ids only (schemas.base.Id)
ids = st.from_regex(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,40}$", fullmatch=True)
texts = st.text(max_size=200)
digests = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def jobs(draw: st.DrawFn) -> JobEnvelope:
    ref = PayloadRef(
        container=draw(names), blob=draw(names), sha256=draw(digests),
        size=draw(st.integers(0, 2**31)), filename=draw(names),
    )  # fmt: skip
    env = draw(st.lists(st.builds(EnvVar, name=st.from_regex(r"^[A-Z_][A-Z0-9_]{0,20}$",
                                  fullmatch=True), value=texts, secret=st.booleans()),
                        max_size=4))  # fmt: skip
    return JobEnvelope(
        job_id=draw(ids), run_id=draw(ids), role=draw(names),
        target=Target(instance=draw(st.none() | names)), payload=ref,
        execution=Execution(args=draw(st.lists(texts, max_size=4)), env=env),
        timeout_s=draw(st.floats(1, 3600)), max_attempts=draw(st.integers(1, 10)),
        created_at=utcnow(),
    )  # fmt: skip


@st.composite
def batches(draw: st.DrawFn) -> EventBatch:
    completions = st.builds(
        Completion, job_id=ids, run_id=ids, role=names, instance=names, incarnation=names,
        outcome=st.sampled_from(Outcome), finished_at=st.just(utcnow()),
        exit_code=st.none() | st.integers(-255, 65535), attempt=st.integers(0, 99),
        stdout_tail=st.text(max_size=100), reason=st.none() | texts,
    )  # fmt: skip
    hellos = st.builds(
        Hello, role=names, instance=names, incarnation=names, new_incarnation=st.booleans(),
        agent_version=names, boot_time=st.just(utcnow()), contract=st.none() | st.just("1.1"),
    )  # fmt: skip
    events = draw(st.lists(completions | hellos, min_size=1, max_size=5))
    return EventBatch(sender=draw(names), events=events)


@settings(max_examples=150, deadline=None)
@given(jobs())
def test_every_job_round_trips_as_message_and_document(job: JobEnvelope) -> None:
    assert decode_message(encode_message(job), JobEnvelope) == job
    assert decode_document(encode_document(job), JobEnvelope) == job


@settings(max_examples=150, deadline=None)
@given(batches())
def test_every_event_batch_round_trips(batch: EventBatch) -> None:
    assert decode_message(encode_message(batch), EventBatch) == batch


#: the next minor after this release's contract: what a later controller may send
NEXT = Version(CONTRACT.major, CONTRACT.minor + 1)


class FutureJob(JobEnvelope):
    """The job model of the next minor, with fields this release does not know."""

    display_name: Annotated[str | None, Since(str(NEXT))] = None
    must_obey: Annotated[str | None, Since(str(NEXT), critical=True)] = None


@settings(max_examples=100, deadline=None)
@given(jobs())
def test_signing_bytes_do_not_change_when_a_later_minor_adds_optional_fields(
    job: JobEnvelope,
) -> None:
    """A reader with more optional fields writes an unset one nowhere: what a 1.1 controller
    signed, a 1.2 agent re-reads byte for byte."""
    ours = json.loads(job.model_dump_json(exclude_none=True))
    theirs = json.loads(FutureJob.model_validate(ours).model_dump_json(exclude_none=True))
    assert canonical_bytes(theirs) == canonical_bytes(ours)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Signer, TrustedKeys]:
    private = tmp_path_factory.mktemp("keys") / "controller.key"
    public, _ = generate(private)
    signer = load_signer(private)
    assert signer is not None
    return signer, TrustedKeys([public])


def wire(data: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


@settings(max_examples=60, deadline=None)
@given(jobs(), st.dictionaries(st.from_regex(r"^x_[a-z]{1,8}$", fullmatch=True), texts,
                               min_size=1, max_size=3))  # fmt: skip
def test_a_signature_covers_fields_this_reader_does_not_know(
    keys: tuple[Signer, TrustedKeys], job: JobEnvelope, extra: dict[str, str]
) -> None:
    """A newer controller signs what it sends, new fields included; this agent verifies the
    message as received, so the signature holds, and the same fields slipped in afterwards
    break it."""
    signer, trusted = keys
    sent = {**json.loads(job.model_dump_json(exclude_none=True)), **extra}
    signed = {**sent, "signature": signer.signature(sent).model_dump(mode="json")}
    assert trusted.verify(wire(signed), True) == signer.key_id
    decoded = decode_message(wire(signed), JobEnvelope)
    assert decoded.model_extra == extra  # kept, not acted on
    with pytest.raises(SignatureError):
        trusted.verify(wire({**signed, "x_injected": "1"}), True)


def test_a_message_says_the_lowest_version_that_can_act_on_it() -> None:
    """Setting a critical field of a later minor raises the message's version; an optional
    field does not; a 1.0 message is written as the integer 1 older agents read."""
    base = json.loads(JobEnvelope.model_validate_json(
        encode_document(_job())).model_dump_json())  # fmt: skip
    assert base["schema_version"] == 1
    optional = FutureJob.model_validate({**base, "display_name": "nightly"})
    assert json.loads(optional.model_dump_json())["schema_version"] == 1
    critical = FutureJob.model_validate({**base, "must_obey": "yes"})
    assert json.loads(critical.model_dump_json())["schema_version"] == str(NEXT)
    with pytest.raises(RequiresNewerAgent, match=f"needs contract {NEXT}; this rolecall speaks"):
        decode_document(critical.model_dump_json().encode(), JobEnvelope)


def test_a_reader_of_this_release_ignores_unknown_fields_of_any_minor_it_can_read() -> None:
    data = json.loads(encode_document(_job()))
    for version in (1, "1.0", str(CONTRACT)):
        job = decode_document(json.dumps({**data, "schema_version": version,
                                          "x_later": {"a": [1]}}).encode(), JobEnvelope)  # fmt: skip
        assert job.model_extra == {"x_later": {"a": [1]}}
        # carried through a rewrite, version kept
        again = json.loads(encode_document(job))
        assert again["x_later"] == {"a": [1]} and Version.parse(again["schema_version"]) == (
            Version.parse(version)
        )


def test_versions_parse_compare_and_refuse_other_majors() -> None:
    assert Version.parse(1) == Version(1, 0) and Version.parse("1.12") > Version.parse("1.2")
    assert Version(1, 0).wire() == 1 and Version(1, 3).wire() == "1.3"
    for bad in ("1", "1.x", "01.1", True, 1.5, None, "1.1.1"):
        with pytest.raises(ContractError):
            Version.parse(bad)
    data = json.loads(encode_document(_job()))
    with pytest.raises(UnknownSchemaVersion):
        decode_document(json.dumps({**data, "schema_version": "2.0"}).encode(), JobEnvelope)
    assert CONTRACT.major in SUPPORTED_MAJORS


def _job() -> JobEnvelope:
    digest = "0" * 64
    return JobEnvelope(
        job_id="r1.any", run_id="r1", role="web",
        payload=PayloadRef(container="rc-payloads", blob=f"sha256/{digest}", sha256=digest,
                           size=1, filename="x.sh"),
        created_at=utcnow(),
    )  # fmt: skip


def test_every_contract_model_is_tolerant() -> None:
    """The rule holds for every model on the wire, not just the ones tested above."""
    import rolecall.schemas as schemas_pkg

    models = [
        v for v in vars(schemas_pkg).values()
        if isinstance(v, type) and issubclass(v, Contract) and v is not Contract
    ]  # fmt: skip
    assert len(models) >= 10
    for model in models:
        assert model.model_config.get("extra") == "allow", model.__name__


def test_only_a_pinned_baseline_needs_contract_1_3() -> None:
    """An agent pin is critical (an agent that cannot follow it must not apply the steps as
    if it had); a baseline without one is still read by every agent since the rules."""
    from rolecall.schemas.agents import AgentPin
    from rolecall.schemas.baseline import Baseline

    plain = Baseline(role="web", version=3, updated_at=utcnow())
    assert json.loads(encode_document(plain))["schema_version"] == 1
    pinned = plain.model_copy(update={"agent": AgentPin(version="0.3.0", release_sha256="a" * 64)})
    assert json.loads(encode_document(pinned))["schema_version"] == "1.3"
    assert pinned.steps_total == 1 and plain.steps_total == 0
    assert decode_document(encode_document(pinned), Baseline).agent == pinned.agent
