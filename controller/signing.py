"""Signing jobs and baselines (Ed25519); see docs/security.md."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from schemas.baseline import Baseline
from schemas.jobs import JobEnvelope


class Signer(Protocol):
    def sign_job(self, job: JobEnvelope) -> JobEnvelope: ...
    def sign_baseline(self, baseline: Baseline) -> Baseline: ...


def load_signer(path: Path | None) -> Signer | None:
    return None
