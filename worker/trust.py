"""Checking signatures on jobs and baselines before anything runs.

With trusted keys configured, a job or baseline must carry a valid Ed25519 signature by one of
them (several keys may be trusted at once, which is how keys are rotated); the completion
reports which key signed. Unsigned, forged or altered documents raise SignatureError and are
poisoned with that reason.

Without a trusted key the agent refuses to start, unless told ``--accept-unsigned``
(``ROLECALL_ACCEPT_UNSIGNED``): then every job is accepted unsigned, which is for development
only (docs/security.md), and the agent says so at start and in its instance record.
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


#: the one line an agent without a trusted key, and not told to accept unsigned work, says
NO_TRUSTED_KEY = (
    "no trusted key: give --trusted-key FILE.pub (ROLECALL_TRUSTED_KEYS) with the public half "
    "of the controller's signing key (`rolecall keys generate --out FILE`), or "
    "--accept-unsigned (ROLECALL_ACCEPT_UNSIGNED=1) to run unsigned jobs (development only)"
)

#: what an agent told ``--accept-unsigned`` says at start
UNSIGNED_WARNING = (
    "no trusted key, --accept-unsigned: running unsigned jobs and baselines (development "
    "only: anyone who can write to this role's queues runs code here)"
)


def trust_summary(settings: WorkerSettings) -> tuple[str, str]:
    """What ``rolecall worker --check`` says of the trust configuration: (ok, warn or FAIL;
    the detail), by the agent's own rules."""
    if not settings.trusted_keys:
        if settings.accept_unsigned:
            return "warn", "none; --accept-unsigned: unsigned jobs run (development only)"
        return "FAIL", NO_TRUSTED_KEY
    try:
        loaded = TrustedKeys(settings.trusted_keys)
    except ConfigError as e:
        return "FAIL", e.message
    ids = ", ".join(loaded.keys)
    return "ok", f"{len(loaded.keys)} Ed25519 key(s) ({ids}); unsigned or replayed work refused"


def verifier(settings: WorkerSettings) -> Verify:
    """The agent's check of jobs and baselines; ConfigError without a key, unless unsigned
    work was explicitly accepted."""
    if not settings.trusted_keys:
        if not settings.accept_unsigned:
            raise ConfigError(NO_TRUSTED_KEY)
        return lambda raw, wrapped: None
    return TrustedKeys(settings.trusted_keys).verify
