"""Roles' sealing keys on the operators' side: made here, public halves kept in the state
container, secrets sealed to them by ``rolecall run`` (schemas/sealing.py says why).

``rolecall run --secret-env`` seals when the role has a sealing key, and otherwise refuses
unless told ``--clear-secrets``: a secret in a queue message can be read by whoever can peek
the queue, and its run record keeps it.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.errors import ConfigError, NotFound
from rolecall.schemas.names import Names, name_key
from rolecall.schemas.redact import MIN_SECRET_CHARS, short_secret
from rolecall.schemas.sealing import Sealed, SealingPublicKey, public_document, seal_values
from rolecall.storage.clients import Storage


def generate_sealing_key(storage: Storage, role: str, out: Path) -> SealingPublicKey:
    """Write a new private key to ``out`` (mode 0600, for the role's instances) and keep its
    public half where ``rolecall run`` finds it. A role's previous key stops opening new
    jobs' secrets: install the new one on its instances first."""
    key = X25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())  # fmt: skip
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{out} exists; refusing to overwrite a key") from None
    except OSError as e:
        raise ConfigError(f"cannot create {out}: {e.strerror or e}") from e
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    doc = public_document(role, key.public_key())
    storage.put_blob(storage.names.state_container, Names.sealing_key_blob(role),
                     encode_document(doc))  # fmt: skip
    return doc


def sealing_key(storage: Storage, role: str) -> SealingPublicKey | None:
    """The role's public sealing key, or None if it has none."""
    try:
        raw = storage.get_blob(storage.names.state_container, Names.sealing_key_blob(role))
    except NotFound:
        return None
    doc = decode_document(raw.data, SealingPublicKey)
    if name_key(doc.role) != name_key(role):
        raise ConfigError(f"the sealing key stored for role {role!r} names role {doc.role!r}")
    return doc


def seal_secrets(
    storage: Storage, role: str, run_id: str, secrets: dict[str, str], *, clear: bool
) -> Sealed | None:
    """The run's secrets sealed to the role's key; None when there are none, or when the
    operator chose ``clear`` (then they travel as plain secret env vars)."""
    for name, value in secrets.items():
        if len(value) < MIN_SECRET_CHARS:
            raise ConfigError(short_secret(name))
    if not secrets or clear:
        return None
    doc = sealing_key(storage, role)
    if doc is None:
        raise ConfigError(
            f"role {role!r} has no sealing key, so its secrets would travel in clear text: "
            f"run `rolecall keys seal-generate {role} --out FILE` and install FILE on its "
            "instances (ROLECALL_SEALING_KEY), or pass --clear-secrets"
        )
    return seal_values(doc, role, run_id, secrets)
