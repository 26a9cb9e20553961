"""The operator's key pair for a local fleet (demo, simulator): generated as an operator would
(`rolecall keys generate`), its public half trusted by every local worker, so local fleets run
signed end to end like real ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rolecall.controller.signing import Signer, generate, load_signer


@dataclass(frozen=True)
class LocalKeys:
    signer: Signer
    public: Path

    def worker_env(self) -> dict[str, str]:
        """What a worker needs to trust this key (``ROLECALL_TRUSTED_KEYS``)."""
        return {"ROLECALL_TRUSTED_KEYS": json.dumps([str(self.public)])}


def local_keys(root: Path) -> LocalKeys:
    private = root / "operator.key"
    public, _ = generate(private)
    signer = load_signer(private)
    assert signer is not None
    return LocalKeys(signer, public)
