"""Shared fixtures: one real Azurite per test session, a fresh namespace per test."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rolecall.controller.signing import Signer, generate, load_signer
from rolecall.devtools.azurite import Azurite
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from tests.fleet import Fleet, Ledger, Operator, fleet


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A real Azurite on free loopback ports, in memory, for the whole session."""
    with Azurite() as az:
        yield az


@dataclass(frozen=True)
class OperatorKey:
    """The operator's signing key (``rolecall keys generate``) and the public half workers
    trust: every test signs, as every fleet must."""

    private: Path
    public: Path
    signer: Signer


@pytest.fixture(scope="session")
def operator_key(tmp_path_factory: pytest.TempPathFactory) -> OperatorKey:
    private = tmp_path_factory.mktemp("keys") / "operator.key"
    public, _ = generate(private)
    signer = load_signer(private)
    assert signer is not None
    return OperatorKey(private, public, signer)


@pytest.fixture
def namespace() -> str:
    """Each test gets its own queues and containers, so tests never see each other's data."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def settings(azurite: Azurite, namespace: str) -> StorageSettings:
    return StorageSettings(connection_string=azurite.connection_string, namespace=namespace)


@pytest.fixture
def storage(settings: StorageSettings) -> Iterator[Storage]:
    s = Storage(settings)
    s.ensure_containers()
    yield s
    s.close()


@pytest.fixture
def env(
    azurite: Azurite, namespace: str, tmp_path: Path, operator_key: OperatorKey
) -> dict[str, str]:
    """Environment for rolecall subprocesses: this test's Azurite and namespace only; the
    operator's CLI signs with the session key and workers trust its public half."""
    # nor an exporter of the developer's (rolecall/telemetry.py): tests contact 127.0.0.1 only
    own = ("ROLECALL_", "AZURE_", "OTEL_", "APPLICATIONINSIGHTS_")
    e = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    e.update(
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        ROLECALL_NAMESPACE=namespace,
        ROLECALL_BOOT_JITTER_S="0",  # every test worker is a new incarnation
        ROLECALL_CACHE_DIR=str(tmp_path / "operator-cache"),  # not the user's own cache
        PYTHONUNBUFFERED="1",
        ROLECALL_SIGNING_KEY=str(operator_key.private),
        ROLECALL_TRUSTED_KEYS=json.dumps([str(operator_key.public)]),
    )
    return e


@pytest.fixture
def ops(storage: Storage, operator_key: OperatorKey) -> Operator:
    return Operator(storage, operator_key.signer)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def workers(tmp_path: Path, env: dict[str, str]) -> Iterator[Fleet]:
    with fleet(tmp_path, env) as f:
        yield f
