"""Token auth: the managed-identity path over HTTPS against Azurite with --oauth basic.

A self-signed certificate is made for 127.0.0.1; Azurite checks the bearer token's audience,
issuer and lifetime. The worker finds its identity (VM name, `rolecall-role` tag) and its
token from a local stand-in for instance metadata, as it would on a real VM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecall.controller.fleet import list_instances
from rolecall.devtools.azurite import Azurite
from rolecall.schemas.errors import AccessDenied
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from tests.conftest import OperatorKey
from tests.fleet import Ledger, Operator, fleet, wait_for
from tests.imds import FakeMetadata
from tests.tls import self_signed


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(tmp)
    with Azurite(cert=cert, key=key, oauth=True) as az:
        yield az, cert


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    m = FakeMetadata(vm_name="vm-7", role_tag="web")
    yield m
    m.close()


@pytest.fixture
def identity_env(
    tls,
    metadata: FakeMetadata,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    operator_key: OperatorKey,
):  # type: ignore[no-untyped-def]
    az, cert = tls
    e = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ROLECALL_", "AZURE_", "IDENTITY_"))
    }
    e |= {
        "ROLECALL_BLOB_ENDPOINT": az.blob_url,
        "ROLECALL_QUEUE_ENDPOINT": az.queue_url,
        "ROLECALL_NAMESPACE": namespace,
        "ROLECALL_BOOT_JITTER_S": "0",
        "REQUESTS_CA_BUNDLE": str(cert),
        "SSL_CERT_FILE": str(cert),
        "ROLECALL_TRUSTED_KEYS": json.dumps([str(operator_key.public)]),
        **metadata.identity_env(),
    }
    for k in ("AZURE_STORAGE_CONNECTION_STRING", "ROLECALL_CONNECTION_STRING"):
        monkeypatch.delenv(k, raising=False)
    for k, v in e.items():
        if k.startswith(("IDENTITY_", "REQUESTS_CA", "SSL_CERT")):
            monkeypatch.setenv(k, v)
    return e


def token_storage(az: Azurite, namespace: str) -> Storage:
    return Storage(
        StorageSettings(blob_endpoint=az.blob_url, queue_endpoint=az.queue_url, namespace=namespace)
    )


def test_worker_and_operator_round_trip_with_managed_identity_over_https(
    tls,
    identity_env: dict[str, str],
    metadata: FakeMetadata,
    namespace: str,
    tmp_path: Path,
    ledger: Ledger,
    operator_key: OperatorKey,
) -> None:
    az, _ = tls
    storage = token_storage(az, namespace)
    ops = Operator(
        storage, operator_key.signer
    )  # creates containers and the events queue with a bearer token
    with fleet(tmp_path, identity_env) as f:
        # no --role/--instance: the agent asks instance metadata (VM name, rolecall-role tag)
        w = f.worker("web", "vm-7", "--use-imds", "--imds-endpoint", metadata.url, start=False)
        w.identity_flags = False
        w.start()
        wait_for(lambda: list_instances(storage, "web"), timeout=60, what="registration over HTTPS")
        ops.enqueue(ops.job("web", ops.publish(ledger.script("tls")), instance="vm-7"))
        wait_for(lambda: ledger.entries("tls"), timeout=60, what="the job over HTTPS")
        wait_for(ops.completions, what="its completion")
    assert [s.instance for s in list_instances(storage, "web")] == ["vm-7"]
    assert any(p.startswith("/msi/token") for p in metadata.requests)
    assert any(p.startswith("/metadata/instance/compute") for p in metadata.requests)


def test_an_expired_token_is_refused(
    tls, identity_env: dict[str, str], metadata: FakeMetadata, namespace: str
) -> None:
    az, _ = tls
    metadata.token_lifetime_s = -600  # already expired when issued
    with pytest.raises(AccessDenied):
        token_storage(az, namespace).send(f"{namespace}-events", "x")
