"""The signed form of jobs and baselines (Ed25519), shared by signer and verifier.

A signature covers the canonical form of the document exactly as it was sent, minus the
``signature`` field: the decoded JSON object re-serialised with sorted keys and no
whitespace. Working from the received JSON (not from a re-dumped model) keeps a newer worker,
whose models may have grown optional fields, able to verify an older controller's signatures.
Everything the job does is inside: role, target, payload digest and size, interpreter, args,
environment, deadlines. So a signed job cannot be altered, re-pointed at other bytes, or
replayed onto another role's or instance's queue (the worker also checks the addressing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rolecall.schemas.codec import read_b64_json, read_json
from rolecall.schemas.errors import ConfigError, ContractError, SignatureError

ALGORITHM = "ed25519"


def canonical_bytes(data: dict[str, Any]) -> bytes:
    body = {k: v for k, v in data.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def key_id(public_key_raw: bytes) -> str:
    """A short, stable name for a public key: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key_raw).hexdigest()[:16]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class TrustedKeys:
    """The public keys whose signatures are accepted: a worker's ``--trusted-key`` files; for
    the controller (re-verifying what it sent before, controller/requeue.py) its own signing
    key's public half and its ``--trusted-key`` files."""

    def __init__(self, paths: list[Path], keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self.keys: dict[str, Ed25519PublicKey] = {}
        for known in keys:
            self.add(known)
        for path in paths:
            try:
                key = serialization.load_pem_public_key(path.read_bytes())
            except OSError as e:
                raise ConfigError(f"cannot read trusted key {path}: {e.strerror}") from e
            except ValueError as e:
                raise ConfigError(f"{path} is not a PEM public key") from e
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigError(f"{path} is not an Ed25519 public key")
            self.add(key)

    def add(self, key: Ed25519PublicKey) -> None:
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
