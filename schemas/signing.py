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
import hashlib
import json
from typing import Any

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
