"""Opening a job's sealed secrets with the role's sealing key (schemas/sealing.py).

The private key is a PEM file installed on the role's instances (``ROLECALL_SEALING_KEY``).
A job whose secrets are sealed and cannot be opened here is refused (``unsealable``), never
run without them; after opening, the values are ordinary secret env vars, masked in
everything the job's output reaches.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from rolecall.schemas.errors import ConfigError
from rolecall.schemas.jobs import EnvVar, JobEnvelope
from rolecall.schemas.sealing import Unsealable, open_values


class Unsealer:
    def __init__(self, key: X25519PrivateKey | None) -> None:
        self.key = key

    @classmethod
    def load(cls, path: Path | None) -> Unsealer:
        """Read the key at start: a wrong path or file is a configuration error."""
        if path is None:
            return cls(None)
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except OSError as e:
            raise ConfigError(f"cannot read sealing key {path}: {e.strerror or e}") from e
        except ValueError as e:
            raise ConfigError(f"{path} is not a PEM private key") from e
        if not isinstance(key, X25519PrivateKey):
            raise ConfigError(f"{path} is not an X25519 sealing key "
                              "(make one with `rolecall keys seal-generate ROLE`)")  # fmt: skip
        return cls(key)

    def open(self, job: JobEnvelope) -> JobEnvelope:
        """``job`` with its sealed secrets opened into its env; raises Unsealable."""
        sealed = job.execution.sealed_env
        if sealed is None:
            return job
        values = open_values(self.key, sealed, job.role, job.run_id)
        try:
            opened = [EnvVar(name=k, value=v, secret=True) for k, v in sorted(values.items())]
        except ValueError as e:
            raise Unsealable(f"the job's sealed secrets are not valid env vars: {e}") from e
        execution = job.execution.model_copy(
            update={"env": [*job.execution.env, *opened], "sealed_env": None}
        )
        return job.model_copy(update={"execution": execution})
