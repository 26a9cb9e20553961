"""Every decode failure is poison: the message decoder and the archive extractor, fuzzed.

What a worker does with a queue message's text (base64, JSON, contract, signature, the ids a
refusal is reported against, the poison record it is dead-lettered with) and with an archive
payload (tar and zip, hostile members, conflicts, corruption) either succeeds or ends in a
refusal with a reason, and the refusal's poison record fits on a queue. Never another
exception: one escaping into the claim loop left a message claimed forever (issue 15, 7).

The default run tries a few hundred cases of each; ``make fuzz`` (pytest -m fuzz) tries
10,000 of each. The same messages and archives, sent to real workers between good jobs, are
in tests/test_worker_poison.py.
"""

from __future__ import annotations

import base64
import io
import json
import stat
import tarfile
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rolecall.controller.signing import Signer
from rolecall.schemas.codec import MAX_MESSAGE_BYTES, decode_message, encode_message, job_ids_of
from rolecall.schemas.errors import HostileArchive, RolecallError
from rolecall.schemas.jobs import JobEnvelope
from rolecall.storage.clients import Message
from rolecall.worker.archive import extract
from rolecall.worker.poison import poison_record
from rolecall.worker.trust import TrustedKeys
from tests import factories

QUICK = settings(
    max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None
)
FULL = settings(
    max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck), database=None
)

# --- messages ----------------------------------------------------------------------------

_KEY = Ed25519PrivateKey.generate()
_SIGNER = Signer(_KEY)


def _trusted() -> TrustedKeys:
    path = Path(tempfile.mkdtemp()) / "trusted.pub"
    path.write_bytes(
        _KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return TrustedKeys([path])


_TRUSTED = _trusted()
_GOOD: dict[str, Any] = json.loads(
    base64.b64decode(encode_message(_SIGNER.sign_job(factories.job())))
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _nested(depth: int, kind: str) -> str:
    opener, closer = {"list": ("[", "]"), "dict": ('{"a":', "}")}[kind]
    return opener * depth + "0" + closer * depth if kind == "dict" else "[" * depth + "]" * depth


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


@st.composite
def mutated_envelope(draw: st.DrawFn) -> str:
    """A real signed job with fields changed, removed, added or nested deep: the cases a
    compromised instance with the queue's update right can write."""
    doc = json.loads(json.dumps(_GOOD))
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from([*doc, "extra", "signature"]))
        action = draw(st.sampled_from(["set", "drop", "deep", "resign"]))
        if action == "set":
            doc[key] = draw(json_values)
        elif action == "drop":
            doc.pop(key, None)
        elif action == "deep":
            doc[key] = "@@DEEP@@"
        else:
            doc.pop("signature", None)
            doc["signature"] = _SIGNER.signature(doc).model_dump()
    text = json.dumps(doc)
    if "@@DEEP@@" in text:
        depth = draw(st.integers(10, 100_000))
        text = text.replace('"@@DEEP@@"', _nested(depth, draw(st.sampled_from(["list", "dict"]))))
    return _b64(text.encode())


messages = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=400).map(_b64),
    json_values.map(lambda v: _b64(json.dumps(v).encode())),
    st.integers(1, 100_000).map(lambda d: _b64(_nested(d, "list").encode())),
    st.integers(1, 100_000).map(lambda d: _b64(_nested(d, "dict").encode())),
    mutated_envelope(),
    mutated_envelope().map(lambda t: t[: len(t) // 2]),
)


def _worker_reads(text: str) -> None:
    """What the worker does with a message's text, to its poison record: every step either
    passes or raises a RolecallError with a reason, and the record fits on a queue."""
    msg = Message(
        queue="rc-role-web",
        id="m1",
        pop_receipt="p",
        content=text,
        dequeue_count=1,
        next_visible_on=None,
    )
    job: JobEnvelope | None = None
    try:
        job = decode_message(text, JobEnvelope)
        _TRUSTED.verify(text, True)
        return  # a valid signed job: it runs
    except RolecallError as e:
        assert e.reason and e.message
        reason, error = e.reason, e.message
    job_ids_of(text)  # the refusal is reported against the run it names, if any
    record = poison_record(msg, reason, error, job=job, instance="web-0", incarnation="i1")
    assert len(encode_message(record)) <= MAX_MESSAGE_BYTES


@QUICK
@given(messages)
def test_every_message_decodes_or_is_refused_with_a_reason(text: str) -> None:
    _worker_reads(text)


@pytest.mark.fuzz
@FULL
@given(messages)
def test_fuzz_messages(text: str) -> None:
    _worker_reads(text)


def test_json_nested_100k_deep_is_refused_as_too_deep() -> None:
    with pytest.raises(RolecallError) as refused:
        decode_message(_b64(_nested(100_000, "list").encode()), JobEnvelope)
    assert refused.value.reason == "too_deep"


# --- archives ----------------------------------------------------------------------------

_PART = st.sampled_from(["a", "b", "A", "run.sh", ".", "..", "", "C:", "x" * 300, "é", "a\\b"])
names = st.one_of(
    st.lists(_PART, min_size=1, max_size=5).map("/".join),
    st.integers(1, 400).map(lambda d: "/".join(["d"] * d)),
    st.text(max_size=30),
)
KINDS = ["file", "dir", "symlink", "hardlink", "fifo", "chr"]
members = st.lists(
    st.tuples(names, st.sampled_from(KINDS), st.binary(max_size=64), names), max_size=8
)

_TAR_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "chr": tarfile.CHRTYPE,
}
_ZIP_MODES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "hardlink": stat.S_IFREG,
    "fifo": stat.S_IFIFO,
    "chr": stat.S_IFCHR,
}
Member = tuple[str, str, bytes, str]


def build_tar(ms: list[Member], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.PAX_FORMAT) as tf:
        for name, kind, data, link in ms:
            info = tarfile.TarInfo(name)
            info.type = _TAR_TYPES[kind]
            info.linkname = link if kind in ("symlink", "hardlink") else ""
            info.size = len(data) if kind == "file" else 0
            tf.addfile(info, io.BytesIO(data) if kind == "file" else None)
    return buf.getvalue()


def build_zip(ms: list[Member]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name": the point of some cases
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, kind, data, link in ms:
                info = zipfile.ZipInfo(name + "/" if kind == "dir" else name or "-")
                info.external_attr = (_ZIP_MODES[kind] | 0o755) << 16
                zf.writestr(info, link.encode("utf-8", "replace") if kind == "symlink" else data)
    return buf.getvalue()


BUILDERS: dict[str, Callable[[list[Member]], bytes]] = {
    "tar": build_tar,
    "tar.gz": lambda ms: build_tar(ms, "w:gz"),
    "zip": build_zip,
}


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(sorted(BUILDERS)))
    try:
        data = BUILDERS[fmt](draw(members))
    except (ValueError, UnicodeError, OSError):
        data = b""  # a member the writer itself refuses (tar: a NUL in a pax name)
    corrupt = draw(st.sampled_from(["none", "truncate", "flip"]))
    if corrupt == "truncate" and data:
        data = data[: draw(st.integers(0, len(data)))]
    elif corrupt == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


def _worker_extracts(data: bytes) -> None:
    """Extraction either completes inside its directory or refuses with HostileArchive."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "a.bin").write_bytes(data)
        try:
            extract(root / "a.bin", root / "out", max_bytes=100_000, max_members=20)
        except HostileArchive as e:
            assert e.reason == "hostile_archive" and e.message
        assert sorted(p.name for p in root.iterdir()) == ["a.bin", "out"], "nothing outside"


#: found by the fuzzer: a zip whose member offset seeks before the file's start (EINVAL)
_NEGATIVE_OFFSET_ZIP = bytes.fromhex(
    "504b030414000000000000002100000000000000000000000000010000002d50"
    "4b01021403140000000000000021000000000000000000000000000100000000"
    "00000000000000ed81000000002d504b050600000000010001002f0000001f01"
    "00000000"
)


@QUICK
@given(archives())
@example(_NEGATIVE_OFFSET_ZIP)
def test_every_archive_extracts_or_is_refused_as_hostile(data: bytes) -> None:
    _worker_extracts(data)


@pytest.mark.fuzz
@FULL
@given(archives())
def test_fuzz_archives(data: bytes) -> None:
    _worker_extracts(data)


@pytest.mark.parametrize(
    "ms",
    [
        [("a", "file", b"1", ""), ("a/b", "file", b"2", "")],
        [("a/b", "file", b"1", ""), ("a", "file", b"2", "")],
        [("a", "file", b"1", ""), ("a", "file", b"2", "")],
        [("a", "dir", b"", ""), ("a", "file", b"2", "")],
        [("l", "symlink", b"", "sub"), ("l/x", "file", b"2", "")],
        [("x" * 300, "file", b"1", "")],
        [("/".join(["d"] * 2000), "file", b"1", "")],
    ],
    ids=["a then a/b", "a/b then a", "twice", "dir then file", "under a link", "long", "deep"],
)
@pytest.mark.parametrize("fmt", ["tar", "zip"])
def test_member_conflicts_are_hostile_not_os_errors(
    tmp_path: Path, ms: list[Member], fmt: str
) -> None:
    (tmp_path / "a.bin").write_bytes(BUILDERS[fmt](ms))
    with pytest.raises(HostileArchive):
        extract(tmp_path / "a.bin", tmp_path / "out", max_bytes=100_000, max_members=20)
    assert not any((tmp_path / "out").iterdir()), "refused before anything is written"


def test_thousands_of_empty_members_are_refused_at_the_cap(tmp_path: Path) -> None:
    """Headers are read one at a time: the cap stops the read, not the end of the file."""
    path = tmp_path / "many.tar"
    with tarfile.open(path, "w") as tf:
        for i in range(2_000):
            tf.addfile(tarfile.TarInfo(f"f{i}"), io.BytesIO(b""))
    with pytest.raises(HostileArchive, match="more than 100"):
        extract(path, tmp_path / "out", max_bytes=100_000, max_members=100)
