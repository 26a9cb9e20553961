"""`rolecall worker --check`: the pre-flight an image bake or an operator runs on an instance.

It passes, claims nothing and registers nothing; it fails clearly, with the exit codes the
worker uses (2 configuration, 3 access refused), when storage is unreachable, a key is refused,
nothing is configured, or a SAS bundle is expired or for another instance; with a managed
identity it gets a token from (a stand-in for) instance metadata and uses it.

Every address contacted is on 127.0.0.1; the metadata endpoint is always pointed at a local
stand-in, so nothing here can reach the real metadata address.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from rolecall.controller.fleet import list_instances
from rolecall.controller.signing import generate
from rolecall.devtools.azurite import Azurite, connection_string
from rolecall.schemas.access import SasBundle
from rolecall.schemas.base import utcnow
from rolecall.storage.clients import Storage
from tests.conftest import OperatorKey
from tests.fleet import ROLECALL, Operator, cli
from tests.imds import FakeMetadata
from tests.tls import self_signed


@pytest.fixture
def metadata() -> Iterator[FakeMetadata]:
    m = FakeMetadata(vm_name="vmss-web_3", role_tag="web")
    yield m
    m.close()


WEB_0 = ("--role", "web", "--instance", "web-0")


def check(env: dict[str, str], state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [str(a) for a in (ROLECALL, "worker", "--check", "--state-dir", state, *args)]
    return subprocess.run(argv, env=env, check=False, capture_output=True, text=True, timeout=300)


def test_check_passes_and_claims_nothing(
    env: dict[str, str], storage: Storage, ops: Operator, tmp_path: Path, metadata: FakeMetadata
) -> None:
    ops.enqueue(ops.job("web", ops.publish(b"#!/bin/sh\nexit 0\n")))
    state = tmp_path / "state"
    public, _ = generate(tmp_path / "controller.key")
    r = check(
        env, state, "--use-imds", "--imds-endpoint", metadata.url, "--trusted-key", str(public)
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "role web, instance vmss-web_3 (from instance metadata" in r.stdout
    assert "OK: nothing failed" in r.stdout
    assert re.search(r"ok\s+trusted keys\s+1 Ed25519 key", r.stdout), r.stdout
    assert re.search(r"ok\s+queue \S+-role-web\s+readable: 1 message", r.stdout), r.stdout
    (msg,) = storage.peek(storage.names.role_queue("web"))
    assert msg.dequeue_count == 0, "the check must never claim a job"
    assert list_instances(storage, "web") == [], "the check must never register"
    assert not state.exists(), "the check must never create the state directory"


def closed_port() -> socket.socket:
    """Bound, never listening: connections to it are refused, and nobody else can take it."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s


def test_check_fails_clearly_when_storage_is_unreachable(
    env: dict[str, str], tmp_path: Path
) -> None:
    with closed_port() as s:
        url = f"http://127.0.0.1:{s.getsockname()[1]}/devstoreaccount1"
        started = time.monotonic()
        unreachable = {**env, "AZURE_STORAGE_CONNECTION_STRING": connection_string(url, url)}
        r = check(unreachable, tmp_path / "s", *WEB_0)
        took = time.monotonic() - started
    assert r.returncode == 1
    assert "FAILED" in r.stderr and "storage unreachable" in r.stderr
    assert "Connection refused" in r.stderr
    assert "skipped: storage is unreachable" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert took < 20, f"a dead endpoint should fail fast, took {took:.1f}s"


def test_check_fails_clearly_when_the_key_is_refused(
    env: dict[str, str], azurite: Azurite, tmp_path: Path
) -> None:
    bad = re.sub(r"AccountKey=[^;]+", "AccountKey=" + "A" * 86 + "==", azurite.connection_string)
    r = check({**env, "AZURE_STORAGE_CONNECTION_STRING": bad}, tmp_path / "s", *WEB_0)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "FAILED" in r.stderr and "Traceback" not in r.stdout + r.stderr


def test_check_fails_clearly_without_a_storage_account_or_identity(tmp_path: Path) -> None:
    bare = {k: v for k, v in os.environ.items() if not k.startswith(("ROLECALL_", "AZURE_"))}
    r = check(bare, tmp_path / "s", "--trusted-key", str(tmp_path / "missing.pub"))
    assert r.returncode == 2
    assert "no storage account configured" in r.stdout and "no role" in r.stdout
    assert "cannot read trusted key" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("instance", "expires_in", "code", "says"),
    [("web-0", -60, 3, "SAS bundle expired"), ("web-9", 3600, 2, "SAS bundle is for web/web-9")],
)
def test_check_refuses_an_expired_or_foreign_sas_bundle(
    env: dict[str, str], tmp_path: Path, instance: str, expires_in: int, code: int, says: str
) -> None:
    nowhere = "http://127.0.0.1:1/devstoreaccount1"  # the bundle is refused before any request
    bundle = SasBundle(
        namespace=env["ROLECALL_NAMESPACE"], role="web", instance=instance,
        blob_endpoint=nowhere, queue_endpoint=nowhere,
        expires_at=utcnow() + timedelta(seconds=expires_in),
    )  # fmt: skip
    sas = tmp_path / "worker.sas.json"
    sas.write_text(bundle.model_dump_json())
    r = check({**env, "ROLECALL_SAS_FILE": str(sas)}, tmp_path / "s", *WEB_0)
    assert r.returncode == code, r.stdout + r.stderr
    assert says in r.stderr and "Traceback" not in r.stdout + r.stderr


def test_check_passes_with_the_bundle_rolecall_sas_worker_issues(
    env: dict[str, str], storage: Storage, tmp_path: Path
) -> None:
    """A worker bundle may claim but not peek its queues: the check says so and passes."""
    bundle = tmp_path / "web0.sas.json"
    r = cli(env, "sas", "worker", "--role", "web", "--instance", "web-0", "--out", str(bundle))
    assert r.returncode == 0, r.stderr
    sas_only = {k: v for k, v in env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    r = check({**sas_only, "ROLECALL_SAS_FILE": str(bundle)}, tmp_path / "s", *WEB_0)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"warn\s+queue \S+-role-web\s+reachable; the SAS bundle may claim", r.stdout)
    assert re.search(r"ok\s+container \S+-payloads\s+readable", r.stdout)
    assert re.search(r"ok\s+baseline\s+none published for role web", r.stdout)


@pytest.fixture(scope="module")
def oauth_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Azurite, Path]]:
    """Azurite over HTTPS checking bearer tokens, as in tests/test_token_auth.py."""
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    with Azurite(cert=cert, key=key, oauth=True) as az:
        yield az, cert


@pytest.mark.parametrize(("token_lifetime_s", "code"), [(3600, 0), (-600, 3)])
def test_check_with_a_managed_identity_gets_a_token_and_uses_it(
    oauth_azurite: tuple[Azurite, Path], metadata: FakeMetadata, namespace: str,
    tmp_path: Path, token_lifetime_s: int, code: int, operator_key: OperatorKey,
) -> None:  # fmt: skip
    """The production path: identity and token from (stand-ins for) instance metadata."""
    az, cert = oauth_azurite
    metadata.token_lifetime_s = token_lifetime_s
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLECALL_", "AZURE_"))}
    env |= {"ROLECALL_BLOB_ENDPOINT": az.blob_url, "ROLECALL_QUEUE_ENDPOINT": az.queue_url,
            "ROLECALL_NAMESPACE": namespace, "REQUESTS_CA_BUNDLE": str(cert),
            "SSL_CERT_FILE": str(cert), **metadata.identity_env(),
            "ROLECALL_TRUSTED_KEYS": json.dumps([str(operator_key.public)])}  # fmt: skip
    r = check(env, tmp_path / "s", "--use-imds", "--imds-endpoint", metadata.url)
    assert r.returncode == code, r.stdout + r.stderr
    said = r"ok\s+credential\s+storage token issued" if code == 0 else r"FAIL\s+credential.*expired"
    assert re.search(said, r.stdout), r.stdout
    assert any(p.startswith("/msi/token") for p in metadata.requests)
    assert "Traceback" not in r.stdout + r.stderr
