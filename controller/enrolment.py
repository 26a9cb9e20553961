"""Instance keys: the operator enrols one per instance it issues credentials to, and the fold
believes a report about an instance only if that instance signed it.

Per-role results queues stop a web instance from speaking for a db instance (web's
credentials cannot add there). Within a role, instances with their own credentials (a SAS
bundle each, from ``rolecall sas worker``) also get their own Ed25519 key: its private half
goes into the bundle, its public half into ``<ns>-state/keys/<role>/<instance>.json``, which
only operators can write. Where instances share one identity (a scale set's managed identity)
there is nothing to enrol, and any instance of the role can report for any other
(docs/security.md says so).

The fold reads a role's keys with one List Blobs call (the key is in the blob's metadata) and
keeps them for a minute: 50,000 instances cost ten listings a minute, not 50,000 reads.
"""

from __future__ import annotations

import base64
import binascii
import threading
import time
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rolecall.schemas.access import InstanceKey
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import encode_document
from rolecall.schemas.errors import NotFound
from rolecall.schemas.names import Names, name_key
from rolecall.schemas.signing import b64, canonical_bytes, key_id
from rolecall.storage.clients import Storage

KEYS_TTL_S = 60.0


def enrol(storage: Storage, role: str, instance: str) -> str:
    """A new key for ``instance``: the public half enrolled (replacing any earlier one, so
    re-issuing credentials rotates the key), the private half returned (raw, base64)."""
    private = Ed25519PrivateKey.generate()
    raw_public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    doc = InstanceKey(
        role=role, instance=instance, key_id=key_id(raw_public), public_key=b64(raw_public),
        issued_at=utcnow(),
    )  # fmt: skip
    storage.put_blob(
        storage.names.state_container, Names.instance_key_blob(role, instance),
        encode_document(doc),
        metadata={"instance": quote(instance, safe=""), "key": doc.public_key},
    )  # fmt: skip
    raw_private = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )  # fmt: skip
    return b64(raw_private)


def enrolled(storage: Storage, role: str) -> list[str]:
    """The instances of ``role`` the operator issued credentials to (their names, as given)."""
    try:
        items = storage.list_blobs(
            storage.names.state_container, Names.instance_keys_prefix(role), metadata=True
        )
    except NotFound:
        return []
    return sorted(unquote(i.metadata["instance"]) for i in items if "instance" in i.metadata)


class EnrolledKeys:
    """The enrolled public keys of each role, listed once a minute at most."""

    def __init__(self, storage: Storage, ttl_s: float = KEYS_TTL_S) -> None:
        self.storage = storage
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._roles: dict[str, tuple[float, dict[str, Ed25519PublicKey]]] = {}

    def key_for(self, role: str, instance: str) -> Ed25519PublicKey | None:
        """The key ``instance`` of ``role`` must sign with; None if none is enrolled."""
        return self._keys(name_key(role)).get(instance)

    def _keys(self, role_key: str) -> dict[str, Ed25519PublicKey]:
        with self._lock:
            cached = self._roles.get(role_key)
            if cached is not None and time.monotonic() - cached[0] < self.ttl_s:
                return cached[1]
        keys = self._list(role_key)
        with self._lock:
            self._roles[role_key] = (time.monotonic(), keys)
        return keys

    def _list(self, role_key: str) -> dict[str, Ed25519PublicKey]:
        try:
            items = self.storage.list_blobs(
                self.storage.names.state_container, f"keys/{role_key}/", metadata=True
            )
        except NotFound:
            return {}
        keys = {}
        for item in items:
            try:
                raw = base64.b64decode(item.metadata["key"], validate=True)
                keys[unquote(item.metadata["instance"])] = Ed25519PublicKey.from_public_bytes(raw)
            except (KeyError, ValueError, binascii.Error):
                continue  # not a key this code wrote: no instance is enrolled by it
        return keys


def signed_by(data: dict[str, object], key: Ed25519PublicKey) -> bool:
    """Whether the batch ``data`` (as received) carries a valid signature by ``key``."""
    sig = data.get("signature")
    if not isinstance(sig, dict) or not isinstance(sig.get("value"), str):
        return False
    try:
        key.verify(base64.b64decode(sig["value"], validate=True), canonical_bytes(data))
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
