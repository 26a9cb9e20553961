"""Checking signatures on jobs and baselines before anything runs.

With trusted keys configured, a job or baseline must carry a valid Ed25519 signature by one of
them (several keys may be trusted at once, which is how keys are rotated); the completion
reports which key signed. Unsigned, forged or altered documents raise SignatureError and are
poisoned with that reason. Without trusted keys every job is accepted unsigned: that mode is
for development only (see docs/security.md).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rolecall.schemas.codec import read_b64_json, read_json
from rolecall.schemas.errors import ConfigError, ContractError, SignatureError
from rolecall.schemas.signing import canonical_bytes, key_id, unb64
from rolecall.worker.config import WorkerSettings

Verify = Callable[[str | bytes, bool], str | None]


class TrustedKeys:
    def __init__(self, paths: list[Path]) -> None:
        self.keys: dict[str, Ed25519PublicKey] = {}
        for path in paths:
            try:
                key = serialization.load_pem_public_key(path.read_bytes())
            except OSError as e:
                raise ConfigError(f"cannot read trusted key {path}: {e.strerror}") from e
            except ValueError as e:
                raise ConfigError(f"{path} is not a PEM public key") from e
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigError(f"{path} is not an Ed25519 public key")
            raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self.keys[key_id(raw)] = key

    def verify(self, raw: str | bytes, base64_wrapped: bool) -> str:
        """Check the signature of a document as received; returns the signer's key id."""
        try:
            data: Any = read_b64_json(raw) if base64_wrapped else read_json(raw)
        except ContractError as e:
            raise SignatureError("cannot read the document to check its signature") from e
        sig = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(sig, dict) or not sig.get("value"):
            raise SignatureError("unsigned: this agent only runs signed work", reason="unsigned")
        key = self.keys.get(str(sig.get("key_id")))
        if key is None:
            raise SignatureError(
                f"signed by unknown key {sig.get('key_id')!r}", reason="untrusted_key"
            )
        try:
            key.verify(unb64(str(sig["value"])), canonical_bytes(data))
        except (InvalidSignature, binascii.Error, ValueError) as e:
            raise SignatureError("signature does not match: forged or altered") from e
        return str(sig["key_id"])


def verifier(settings: WorkerSettings) -> Verify:
    if not settings.trusted_keys:
        return lambda raw, wrapped: None
    return TrustedKeys(settings.trusted_keys).verify
