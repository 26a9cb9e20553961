"""Signing jobs, baselines and agent releases with the controller's Ed25519 key.

The private key is a PEM file (``--signing-key`` / ``ROLECALL_SIGNING_KEY``); workers hold
the matching public keys (``--trusted-key``). ``rolecall keys generate`` makes a pair.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rolecall.schemas.agents import AgentRelease
from rolecall.schemas.base import utcnow
from rolecall.schemas.baseline import Baseline
from rolecall.schemas.codec import encode_message_data
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.jobs import JobEnvelope, Signature
from rolecall.schemas.signing import b64, canonical_bytes, key_id

Signed = TypeVar("Signed", JobEnvelope, Baseline, AgentRelease)


class Signer:
    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        raw = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id = key_id(raw)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    # a wave of thousands is sent by worker processes, which seal their own messages: the
    # key crosses to them (over a local pipe) as its raw bytes
    def __getstate__(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    def __setstate__(self, raw: bytes) -> None:
        self.__init__(Ed25519PrivateKey.from_private_bytes(raw))  # type: ignore[misc]

    def sign(self, doc: Signed) -> Signed:
        # sign exactly what will be sent: the JSON the codec produces, minus the signature
        unsigned = doc.model_copy(update={"signature": None})
        data = json.loads(unsigned.model_dump_json(exclude_none=True))
        return doc.model_copy(update={"signature": self.signature(data)})

    def signature(self, data: dict[str, Any]) -> Signature:
        """The signature for a document already in its sent (JSON) form."""
        return Signature(key_id=self.key_id, value=b64(self._key.sign(canonical_bytes(data))))

    def sign_job(self, job: JobEnvelope) -> JobEnvelope:
        return self.sign(job)

    def sign_baseline(self, baseline: Baseline) -> Baseline:
        return self.sign(baseline)


class Stamp:
    """Seals a job message at the moment it is sent: its ``sent_at`` now, then the signature
    (when a key is configured) over everything including it.

    A worker compares ``sent_at`` with the queue's insertion time of the message it received
    (``worker/binding.py``), so the stamp must be taken by the process that sends, per
    message, just before its send request: a wave stamped when it was planned would arrive
    stale if it took long to send, and a run's later waves are sent long after it began."""

    def __init__(self, signer: Signer | None) -> None:
        self.signer = signer

    def __call__(self, data: dict[str, Any]) -> str:
        """The encoded message for ``data`` (a job in its JSON form, unsigned)."""
        sealed = {k: v for k, v in data.items() if k != "signature"}
        sealed["sent_at"] = utcnow().isoformat().replace("+00:00", "Z")
        if self.signer is not None:
            sealed["signature"] = self.signer.signature(sealed).model_dump(mode="json")
        return encode_message_data(sealed, f"job {data.get('job_id')}")

    def job(self, job: JobEnvelope) -> str:
        return self(job_data(job))


def job_data(job: JobEnvelope) -> dict[str, Any]:
    """A job in the JSON form it is sent in, for a ``Stamp`` to seal."""
    data: dict[str, Any] = json.loads(job.model_dump_json(exclude_none=True))
    return data


def load_signer(path: Path | None) -> Signer | None:
    if path is None:
        return None
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise ConfigError(f"cannot read signing key {path}: {e.strerror}") from e
    except ValueError as e:
        raise ConfigError(f"{path} is not a PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key")
    return Signer(key)


def generate(path: Path) -> tuple[Path, str]:
    """Write a new private key (mode 0600) and its public key next to it."""
    if path.exists():
        raise ConfigError(f"{path} exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = path.with_name(path.name + ".pub")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public, Signer(key).key_id
