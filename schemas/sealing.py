"""Secrets sealed to a role: only that role's instances can read them.

A job's secret environment used to travel in clear text in its queue message and sit in its
run record, readable by anyone who could peek a queue or read the state container. Now each
role may have a sealing key pair (X25519): the controller keeps only the public key (a blob,
``Names.sealing_key_blob``) and seals to it; the private key is installed on the role's
instances (``ROLECALL_SEALING_KEY``), as Azure's Custom Script Extension encrypts its
protected settings to the VM's certificate.

Sealing is ECIES: an ephemeral X25519 key agrees a secret with the role's key, HKDF-SHA256
derives a ChaCha20-Poly1305 key from it, and the associated data binds the ciphertext to its
role and run. Not to one job: a ``--each`` run is dispatched in waves by the controller
service, which never holds the clear values, so every job of the run carries the same
sealed value. The job's signature covers the sealed value like every other field, so it
cannot be moved to another job either.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import Field

from rolecall.schemas.base import Contract, Name
from rolecall.schemas.errors import RolecallError


class Unsealable(RolecallError):
    """A sealed value this agent cannot open: no key, another role's key, or altered."""

    reason = "unsealable"


class Sealed(Contract):
    """Values sealed to one role's public key (``key_id`` says which)."""

    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")
    ephemeral: str = Field(max_length=64, description="base64 X25519 public key")
    nonce: str = Field(max_length=32, description="base64, 12 bytes")
    ciphertext: str = Field(max_length=1024 * 1024, description="base64 ChaCha20-Poly1305")


class SealingPublicKey(Contract):
    """What the controller keeps of a role's sealing key (``Names.sealing_key_blob``)."""

    kind: str = "sealing_key"
    role: Name
    key_id: str
    public_key: str = Field(max_length=64, description="base64 raw X25519 public key")


def key_id_of(public: X25519PublicKey) -> str:
    return hashlib.sha256(_raw(public)).hexdigest()[:16]


def public_document(role: str, public: X25519PublicKey) -> SealingPublicKey:
    encoded = base64.b64encode(_raw(public)).decode()
    return SealingPublicKey(role=role, key_id=key_id_of(public), public_key=encoded)


def seal_values(doc: SealingPublicKey, role: str, run_id: str, values: dict[str, str]) -> Sealed:
    """Seal ``values`` (name -> secret) for the instances of ``role``, for run ``run_id``."""
    recipient = X25519PublicKey.from_public_bytes(base64.b64decode(doc.public_key))
    ephemeral = X25519PrivateKey.generate()
    key = _derive(ephemeral.exchange(recipient), _raw(ephemeral.public_key()))
    nonce = os.urandom(12)
    plain = json.dumps(values, sort_keys=True).encode()
    sealed = ChaCha20Poly1305(key).encrypt(nonce, plain, _context(role, run_id))
    return Sealed(key_id=key_id_of(recipient), ephemeral=_b64(_raw(ephemeral.public_key())),
                  nonce=_b64(nonce), ciphertext=_b64(sealed))  # fmt: skip


def open_values(
    key: X25519PrivateKey | None, sealed: Sealed, role: str, run_id: str
) -> dict[str, str]:
    """The values ``seal_values`` sealed; raises Unsealable."""
    if key is None:
        raise Unsealable("the job's secrets are sealed and this agent has no sealing key "
                         "(ROLECALL_SEALING_KEY)")  # fmt: skip
    if sealed.key_id != key_id_of(key.public_key()):
        raise Unsealable(f"the job's secrets are sealed to key {sealed.key_id}; this agent "
                         f"holds {key_id_of(key.public_key())}")  # fmt: skip
    try:
        ephemeral = base64.b64decode(sealed.ephemeral, validate=True)
        shared = key.exchange(X25519PublicKey.from_public_bytes(ephemeral))
        plain = ChaCha20Poly1305(_derive(shared, ephemeral)).decrypt(
            base64.b64decode(sealed.nonce, validate=True),
            base64.b64decode(sealed.ciphertext, validate=True),
            _context(role, run_id),
        )
        values = json.loads(plain)
    except (InvalidTag, ValueError) as e:
        raise Unsealable("the job's sealed secrets do not open: altered, or sealed for "
                         "another role or run") from e  # fmt: skip
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise Unsealable("the job's sealed secrets are not a set of names and values")
    return values


def _derive(shared: bytes, ephemeral: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral, info=b"rolecall sealed secrets v1").derive(
        shared
    )


def _context(role: str, run_id: str) -> bytes:
    return json.dumps(["rolecall-secrets", 1, role, run_id]).encode()


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
