"""The SAS bundle: the least-privilege credential set a worker instance runs with.

Azure has no prefix-scoped SAS for blobs, so the bundle mixes scopes: a SAS per queue (process
and update on the instance's own role and instance queues, add on the events and poison
queues), read on the payloads container, read on its role's baseline blob, write on its own
instance record blob, and create-only on the logs container (new log blobs; it cannot
overwrite anyone's existing log). Issued by ``rolecall sas worker``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_serializer

from rolecall.schemas.base import Contract, Name, Timestamp
from rolecall.schemas.version import Since


class SasBundle(Contract):
    kind: Literal["sas_bundle"] = "sas_bundle"
    namespace: str
    role: str
    instance: str
    blob_endpoint: str
    queue_endpoint: str
    expires_at: Timestamp
    queues: dict[str, SecretStr] = Field(default_factory=dict)
    containers: dict[str, SecretStr] = Field(default_factory=dict)
    blobs: dict[str, SecretStr] = Field(
        default_factory=dict, description='"<container>/<blob path>" -> SAS token'
    )
    #: the instance's own Ed25519 private key (raw, base64), whose public half the operator
    #: enrolled when issuing the bundle: the instance signs its reports with it, so the
    #: controller believes a report about this instance only from this instance
    instance_key: Annotated[SecretStr | None, Since("1.2")] = None

    @field_serializer("queues", "containers", "blobs", when_used="json")
    def _reveal(self, tokens: dict[str, SecretStr]) -> dict[str, str]:
        """The bundle file must hold the tokens themselves; ``repr`` still hides them."""
        return {k: v.get_secret_value() for k, v in tokens.items()}

    @field_serializer("instance_key", when_used="json")
    def _reveal_key(self, key: SecretStr | None) -> str | None:
        return None if key is None else key.get_secret_value()


class InstanceKey(Contract):
    """The public key enrolled for one instance (``<ns>-state/keys/<role>/<instance>.json``);
    written by the operator side only, read by the fold."""

    kind: Literal["instance_key"] = "instance_key"
    role: Name
    instance: Name
    key_id: str = Field(max_length=64)
    public_key: str = Field(max_length=100, description="raw Ed25519 public key, base64")
    issued_at: Timestamp
