"""Agent releases, and the pin by which a role's baseline asks for one.

Images lag: whatever agent was baked into an image comes back after every reimage. So an
agent upgrades itself, with nothing but the storage account. An operator publishes a release
(``rolecall agent publish``): every wheel the agent needs on the instances' platforms,
content-addressed in the payloads container like any payload, and this document naming them,
written once at ``<ns>-payloads/agents/<version>.json`` (``Names.agent_release_blob``).

A role's baseline pins a version *and the SHA-256 of that document*, so a signed baseline
binds the exact wheels an instance installs, and a release cannot be swapped under a pin.
The release carries its own signature as well, checked wherever trusted keys are configured.

Why the payloads container and not the state container: workers may read all of the payloads
container (Blob Data Reader; a SAS bundle's container token), while in the state container
they may read ``baselines/`` only, because run records there hold secret job environments.
And a SAS bundle's per-blob tokens could not cover releases published after it was issued.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from rolecall.schemas.base import Contract, Digest, Timestamp
from rolecall.schemas.jobs import PayloadRef, Signature
from rolecall.schemas.names import AGENT_VERSION_PATTERN
from rolecall.schemas.version import Version

#: An agent version as ``rolecall/__init__.py`` writes it (PEP 440, normalised), restricted to
#: what is safe as one path segment on every platform: it names a directory and a blob.
AgentVersion = Annotated[str, Field(pattern=AGENT_VERSION_PATTERN)]


class AgentPin(Contract):
    """A baseline's agent step: run exactly this agent version, from exactly this release."""

    version: AgentVersion
    release_sha256: Digest = Field(description="SHA-256 of the release document as published")


class AgentRelease(Contract):
    """One agent version's wheels, for every platform the operator published it for."""

    kind: Literal["agent_release"] = "agent_release"
    version: AgentVersion
    contract: str = Field(description="the contract version this agent speaks")
    wheels: list[PayloadRef] = Field(min_length=1, max_length=500)
    published_at: Timestamp
    issuer: str = Field(default="rolecall", max_length=128)
    signature: Signature | None = None

    @field_validator("contract")
    @classmethod
    def _a_version(cls, v: str) -> str:
        return str(Version.parse(v))

    @property
    def speaks(self) -> Version:
        return Version.parse(self.contract)
