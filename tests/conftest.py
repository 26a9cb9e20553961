"""Shared fixtures: one real Azurite per test session, a fresh namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecall.devtools.azurite import Azurite
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from tests.fleet import Fleet, Ledger, Operator, fleet


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """A real Azurite on free loopback ports, in memory, for the whole session."""
    with Azurite() as az:
        yield az


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
def env(azurite: Azurite, namespace: str, tmp_path: Path) -> dict[str, str]:
    """Environment for rolecall subprocesses: this test's Azurite and namespace only."""
    # nor an exporter of the developer's (rolecall/telemetry.py): tests contact 127.0.0.1 only
    own = ("ROLECALL_", "AZURE_", "OTEL_", "APPLICATIONINSIGHTS_")
    e = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    e.update(
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        ROLECALL_NAMESPACE=namespace,
        ROLECALL_BOOT_JITTER_S="0",  # every test worker is a new incarnation
        ROLECALL_CACHE_DIR=str(tmp_path / "operator-cache"),  # not the user's own cache
        PYTHONUNBUFFERED="1",
    )
    return e


@pytest.fixture
def ops(storage: Storage) -> Operator:
    return Operator(storage)


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    return Ledger(tmp_path / "ledger.txt")


@pytest.fixture
def workers(tmp_path: Path, env: dict[str, str]) -> Iterator[Fleet]:
    with fleet(tmp_path, env) as f:
        yield f
