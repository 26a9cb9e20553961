"""The SAS bundle: the least-privilege credential set a worker instance runs with.

Azure has no prefix-scoped SAS for blobs, so the bundle mixes scopes: a SAS per queue (process
and update on the instance's own role and instance queues, add on the events and poison
queues), read on the payloads container, read on its role's baseline blob, write on its own
instance record blob, and create-only on the logs container (new log blobs; it cannot
overwrite anyone's existing log). Issued by ``rolecall sas worker``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_serializer

from rolecall.schemas.base import Contract, Timestamp


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

    @field_serializer("queues", "containers", "blobs", when_used="json")
    def _reveal(self, tokens: dict[str, SecretStr]) -> dict[str, str]:
        """The bundle file must hold the tokens themselves; ``repr`` still hides them."""
        return {k: v.get_secret_value() for k, v in tokens.items()}
