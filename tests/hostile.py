"""Malformed and hostile messages, each with the poison reason it must earn."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from rolecall.schemas import PayloadKind
from rolecall.schemas.jobs import Execution, PayloadRef
from tests.fleet import Operator, sha

ROLE = "web"


def _b64(obj: object) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.b64encode(raw).decode()


def _tar(members: Callable[[tarfile.TarFile], None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        members(tf)
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"x", **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in attrs.items():
        setattr(info, k, v)
    tf.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _zip_symlink(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(name)
        info.external_attr = 0o120777 << 16
        zf.writestr(info, target)
        zf.writestr("run.sh", "echo hi\n")
    return buf.getvalue()


@dataclass
class Case:
    name: str
    reason: str
    make: Callable[[Operator], str]  # returns the message text to send


def _job_text(ops: Operator, payload: PayloadRef | None, **kw: object) -> str:
    return ops.signed(ops.job(ROLE, payload, job_id=f"hostile-{os.urandom(4).hex()}", **kw))


def _archive(ops: Operator, data: bytes, filename: str = "a.tar.gz") -> PayloadRef:
    return ops.publish(data, filename, PayloadKind.ARCHIVE)


def _valid_envelope(ops: Operator) -> dict[str, object]:
    return json.loads(base64.b64decode(_job_text(ops, ops.publish(b"echo ok\n"))))


def _forged_ref(ops: Operator, data: bytes, **change: object) -> PayloadRef:
    good = ops.publish(b"the real bytes\n")
    return good.model_copy(update={"sha256": sha(data), "blob": f"sha256/{sha(data)}", **change})


def _tampered(ops: Operator) -> PayloadRef:
    """The blob at a digest's path holds other bytes (someone overwrote the store)."""
    claimed = b"echo innocent\n"
    evil = b"echo evil!!!!\n"  # same length
    ref = ops.publish(claimed)
    ops.storage.put_blob(ref.container, ref.blob, evil)
    return ref


CASES = [
    Case("not base64", "malformed", lambda ops: "<<< definitely not base64 >>>"),
    Case("base64 of binary", "malformed", lambda ops: _b64(os.urandom(64))),
    Case("not json", "malformed", lambda ops: _b64(b"{job: yes")),
    Case("json array", "malformed", lambda ops: _b64([1, 2, 3])),
    Case(
        "no schema version",
        "malformed",
        lambda ops: _b64({k: v for k, v in _valid_envelope(ops).items() if k != "schema_version"}),
    ),
    Case(
        "future schema version",
        "unknown_schema_version",
        lambda ops: _b64({**_valid_envelope(ops), "schema_version": 2}),
    ),
    Case(
        "wrong kind", "malformed", lambda ops: _b64({**_valid_envelope(ops), "kind": "completion"})
    ),
    Case(
        "missing field",
        "malformed",
        lambda ops: _b64({k: v for k, v in _valid_envelope(ops).items() if k != "job_id"}),
    ),
    Case(
        "needs a newer agent",
        "requires_newer_agent",
        lambda ops: _b64({**_valid_envelope(ops), "schema_version": "1.99", "sudo": True}),
    ),
    Case(
        "negative timeout", "malformed", lambda ops: _b64({**_valid_envelope(ops), "timeout_s": -1})
    ),
    Case("huge garbage", "malformed", lambda ops: _b64(os.urandom(45_000))),
    Case(
        "wrong role",
        "wrong_role",
        lambda ops: ops.signed(ops.job("db", ops.publish(b"echo\n"), job_id="wrong-role")),
    ),
    Case(
        "instance job on role queue",
        "wrong_instance",
        lambda ops: _job_text(ops, ops.publish(b"echo\n"), instance="web-9"),
    ),
    Case(
        "payload missing",
        "payload_missing",
        lambda ops: _job_text(ops, _forged_ref(ops, b"never uploaded")),
    ),
    Case("payload tampered", "payload_tampered", lambda ops: _job_text(ops, _tampered(ops))),
    Case(
        "payload size lies",
        "payload_tampered",
        lambda ops: _job_text(ops, ops.publish(b"echo size\n").model_copy(update={"size": 3})),
    ),
    Case(
        "payload outside the store",
        "payload_tampered",
        lambda ops: _job_text(
            ops,
            ops.publish(b"echo x\n").model_copy(update={"container": ops.names.state_container}),
        ),
    ),
    Case(
        "archive with ..",
        "hostile_archive",
        lambda ops: _job_text(
            ops,
            _archive(ops, _tar(lambda t: _add(t, "../../escape.sh"))),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
    Case(
        "archive with absolute path",
        "hostile_archive",
        lambda ops: _job_text(
            ops,
            _archive(ops, _tar(lambda t: _add(t, "/etc/evil"))),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
    Case(
        "tar symlink out",
        "hostile_archive",
        lambda ops: _job_text(
            ops,
            _archive(
                ops,
                _tar(lambda t: _add(t, "link", b"", type=tarfile.SYMTYPE, linkname="../../../etc")),
            ),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
    Case(
        "zip symlink out",
        "hostile_archive",
        lambda ops: _job_text(
            ops,
            _archive(ops, _zip_symlink("etc", "/etc"), "a.zip"),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
    Case(
        "device file",
        "hostile_archive",
        lambda ops: _job_text(
            ops,
            _archive(
                ops,
                _tar(lambda t: _add(t, "dev", b"", type=tarfile.CHRTYPE, devmajor=1, devminor=3)),
            ),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
    Case(
        "zip bomb",
        "hostile_archive",
        lambda ops: _job_text(
            ops,
            _archive(ops, _zip({"run.sh": b"\0" * 3_000_000}), "b.zip"),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
    Case(
        # a name no file system takes (255 bytes a component) is refused before extracting;
        # an OSError in extraction (Windows: 260 a path) is still the archive's refusal
        "archive path too long to extract here",
        "hostile_archive",
        lambda ops: _job_text(
            ops,
            _archive(ops, _tar(lambda t: (_add(t, "run.sh"), _add(t, "d/" + "n" * 300)))),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
    Case(
        "archive without its entrypoint",
        "cannot_execute",
        lambda ops: _job_text(
            ops,
            _archive(ops, _zip({"other.sh": b"echo\n"}), "c.zip"),
            execution=Execution(entrypoint="run.sh"),
        ),
    ),
]


def _nested(depth: int) -> str:
    """A job-looking object nested ``depth`` deep: the parser's recursion, not the contract,
    is what it attacks (24,000 deep is 64 KiB of base64, the most a queue message holds)."""
    return _b64(
        ('{"kind":"job","schema_version":1,"x":' + "[" * depth + "]" * depth + "}").encode()
    )


def _archive_job(ops: Operator, data: bytes, filename: str = "a.tar.gz") -> str:
    return _job_text(ops, _archive(ops, data, filename), execution=Execution(entrypoint="run.sh"))


def _members(*names: str) -> bytes:
    return _tar(lambda t: [_add(t, n) for n in ("run.sh", *names)])


#: Issue 15, finding 7: each once escaped the poison path (RecursionError, bare OSError) or
#: would have; sent between good jobs by tests/test_worker_poison.py.
DECODE_CASES = [
    Case("json nested 24,000 deep", "too_deep", lambda ops: _nested(24_000)),
    Case("tar a then a/b", "hostile_archive", lambda ops: _archive_job(ops, _members("a", "a/b"))),
    Case("tar a/b then a", "hostile_archive", lambda ops: _archive_job(ops, _members("a/b", "a"))),
    Case("tar name twice", "hostile_archive", lambda ops: _archive_job(ops, _members("a", "a"))),
    Case(
        "tar 2,000 deep",
        "hostile_archive",
        lambda ops: _archive_job(ops, _members("/".join(["d"] * 2_000))),
    ),
    Case(
        "tar of 5,000 members",
        "hostile_archive",
        lambda ops: _archive_job(ops, _members(*(f"f{i}" for i in range(5_000)))),
    ),
    Case(
        "zip a then a/b",
        "hostile_archive",
        lambda ops: _archive_job(ops, _zip({"run.sh": b"", "a": b"", "a/b": b""}), "z.zip"),
    ),
    Case(
        "NUL in an argument",
        "cannot_execute",
        lambda ops: _job_text(ops, ops.publish(b"echo\n"), execution=Execution(args=["a\0b"])),
    ),
]
