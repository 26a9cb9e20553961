"""SAS bundles are revocable, HTTPS-only and short-lived (issue 15, finding 10), proven against
Azurite, which enforces SAS permissions, stored access policies and the protocol a token allows
(azurite/dist/src/*/authentication/*SASAuthenticator.js: an unknown or deleted policy id is an
AuthorizationFailure, a token for HTTPS used over HTTP an AuthorizationProtocolMismatch)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from azure.core.credentials import AzureSasCredential
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobClient
from azure.storage.queue import QueueClient, generate_queue_sas

from rolecall.controller import access_policies
from rolecall.controller.access_policies import POLICY_LIMIT, Grant
from rolecall.controller.sas import DEFAULT_HOURS, issue_worker_sas, protocol_for
from rolecall.schemas.access import SasBundle
from rolecall.schemas.base import utcnow
from rolecall.schemas.codec import decode_document
from rolecall.schemas.errors import ConfigError
from rolecall.storage.clients import Storage
from tests.fleet import cli


def _queue(bundle: SasBundle, name: str) -> QueueClient:
    token = bundle.queues[name].get_secret_value()
    return QueueClient(
        bundle.queue_endpoint, name, credential=AzureSasCredential(token), retry_total=0
    )


def _payloads(bundle: SasBundle, storage: Storage, path: str) -> BlobClient:
    c = storage.names.payloads_container
    token = bundle.containers[c].get_secret_value()
    return BlobClient(
        bundle.blob_endpoint, c, path, credential=AzureSasCredential(token), retry_total=0
    )


def _report(bundle: SasBundle, storage: Storage) -> None:
    c = storage.names.results_container(bundle.role)
    token = bundle.containers[c].get_secret_value()
    BlobClient(
        bundle.blob_endpoint, c, f"r-{utcnow():%H%M%S%f}.json",
        credential=AzureSasCredential(token), retry_total=0,
    ).upload_blob(b"{}")  # fmt: skip


def _refused(attempt: object) -> None:
    with pytest.raises(HttpResponseError) as e:
        attempt()  # type: ignore[operator]
    assert e.value.status_code == 403


def _issue(env: dict[str, str], tmp_path: Path, role: str, instance: str) -> SasBundle:
    out = tmp_path / f"{instance}.sas.json"
    r = cli(env, "sas", "worker", "--role", role, "--instance", instance, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return decode_document(out.read_bytes(), SasBundle)


def test_a_revoked_role_bundle_is_refused_and_other_roles_keep_working(
    storage: Storage, env: dict[str, str], tmp_path: Path
) -> None:
    web, db = _issue(env, tmp_path, "web", "web-0"), _issue(env, tmp_path, "db", "db-0")
    n = storage.names
    web_q, db_q = n.role_queue("web"), n.role_queue("db")
    assert list(_queue(web, web_q).receive_messages()) == []  # works before
    _report(web, storage)

    r = cli(env, "sas", "revoke", "web")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("role web: revoked g"), r.stdout
    assert "rolecall sas revoke --policy g" in r.stdout, "says what still honours it"

    _refused(lambda: list(_queue(web, web_q).receive_messages()))
    _refused(lambda: list(_queue(web, n.instance_queue("web-0")).receive_messages()))
    _refused(lambda: _queue(web, n.poison_queue(web_q)).send_message("x"))
    _refused(lambda: _report(web, storage))
    assert list(_queue(db, db_q).receive_messages()) == [], "another role is untouched"
    _report(db, storage)

    again = _issue(env, tmp_path, "web", "web-0")  # re-issuing starts a new generation
    assert list(_queue(again, web_q).receive_messages()) == []
    _refused(lambda: list(_queue(web, web_q).receive_messages()))


def test_revoking_a_generation_cuts_every_role_on_the_shared_containers(
    storage: Storage, env: dict[str, str], tmp_path: Path
) -> None:
    web, db = _issue(env, tmp_path, "web", "web-0"), _issue(env, tmp_path, "db", "db-0")
    storage.put_blob(storage.names.payloads_container, "sha256/x", b"payload")
    assert _payloads(web, storage, "sha256/x").download_blob().readall() == b"payload"
    token = web.containers[storage.names.payloads_container].get_secret_value()
    (generation,) = [p.split("=")[1] for p in token.split("&") if p.startswith("si=")]

    r = cli(env, "sas", "revoke", "--policy", generation)
    assert r.returncode == 0, r.stderr
    for bundle in (web, db):
        _refused(lambda b=bundle: _payloads(b, storage, "sha256/x").download_blob().readall())
        _refused(lambda b=bundle: list(_queue(b, storage.names.role_queue(b.role)).peek_messages()))


def test_tokens_are_https_only_unless_the_account_is_on_this_machine(storage: Storage) -> None:
    assert protocol_for("https://acct.queue.core.windows.net") == "https"
    assert protocol_for("http://127.0.0.1:10001/devstoreaccount1") == "https,http"
    assert protocol_for("http://localhost:10001/a", "http://[::1]:10000/a") == "https,http"
    with pytest.raises(ConfigError, match="plain HTTP"):
        protocol_for("http://acct.queue.core.windows.net")
    bundle = issue_worker_sas(storage, "web", "web-0", hours=1)
    tokens = [t.get_secret_value() for t in (*bundle.queues.values(), *bundle.blobs.values())]
    assert all("spr=https%2Chttp" in t or "spr=https,http" in t for t in tokens), tokens[0]
    assert all("si=g" in t and "se=" not in t and "sp=" not in t for t in tokens), tokens[0]

    # what a real account's bundle carries, and Azurite refuses over plain HTTP
    q = storage.names.role_queue("web")
    token = bundle.queues[q].get_secret_value()
    policy = dict(p.split("=", 1) for p in token.split("&"))["si"]
    account = storage.settings.connection_string.get_secret_value()  # type: ignore[union-attr]
    parts = dict(p.split("=", 1) for p in account.split(";") if "=" in p)
    https_only = generate_queue_sas(
        parts["AccountName"], q, account_key=parts["AccountKey"], policy_id=policy,
        protocol="https",
    )  # fmt: skip
    client = QueueClient(
        bundle.queue_endpoint, q, credential=AzureSasCredential(https_only), retry_total=0
    )
    _refused(lambda: list(client.peek_messages()))


def test_the_default_lifetime_is_a_week(
    storage: Storage, env: dict[str, str], tmp_path: Path
) -> None:
    assert DEFAULT_HOURS == 24 * 7
    before = utcnow()
    bundle = _issue(env, tmp_path, "web", "web-0")
    assert timedelta(days=6) < bundle.expires_at - before <= timedelta(days=7, minutes=1)


def test_rolling_bundles_for_months_keeps_each_queue_within_five_policies(
    storage: Storage,
) -> None:
    """Issue every day for 60 days with a week's lifetime: a generation is reused while half
    its life is left, expired ones are dropped, so at most two are alive at once."""
    q = storage.names.role_queue("web")
    storage.ensure_queue(q)
    start, week = utcnow(), timedelta(days=7)
    used = []
    for day in range(60):
        now = start + timedelta(days=day)
        used.append(access_policies.policy_for(storage, Grant("queue", q, "pu"), now, week).id)
        live = [p for p in access_policies.read(storage, "queue", q) if p.expiry > now]
        assert len(live) <= 2 and len(access_policies.read(storage, "queue", q)) <= POLICY_LIMIT
    assert 60 / 4 <= len(set(used)) <= 60 / 3, "a new generation every 3.5 days or so"
