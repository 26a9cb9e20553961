"""Issuing the least-privilege SAS bundle a worker instance runs with.

What a worker needs, and nothing more (Azure has no prefix-scoped blob SAS, so scopes are
per queue, per container or per blob):

| resource | permission | why |
| --- | --- | --- |
| its role queue | process, update | claim, renew leases, delete |
| its instance queue | read, process, update | the same, and peek for a cancel |
| its role's results container | create | post hellos, started notes and completions |
| the two poison queues | add | refuse bad messages |
| payloads container | read | fetch scripts and archives |
| its role's baseline blob | read | boot configuration |
| its own instance record | read, create, write | heartbeat; read at start: a second agent? |
| logs container | create | new log blobs only; cannot overwrite anyone's |

Queue SAS tokens must be signed with the account key (queues have no user-delegation SAS),
so issuing needs a connection string with the key. The queues and containers are created
first: the worker cannot create them.

Every token names a stored access policy (controller/access_policies.py), which holds its
permissions and lifetime, so a bundle can be revoked without rotating the account key; and
every token is HTTPS only (``spr=https``), except against a loopback endpoint (Azurite in
development), where plain HTTP is allowed too.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from azure.storage.blob import generate_blob_sas, generate_container_sas
from azure.storage.queue import generate_queue_sas
from pydantic import SecretStr

from rolecall.controller import access_policies
from rolecall.controller.access_policies import Grant, Policy
from rolecall.controller.enrolment import enrol, enrolled
from rolecall.schemas.access import SasBundle
from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage

#: A week: long enough to ride out a weekend, short enough that a forgotten bundle dies soon.
#: Roll bundles before then (docs/security.md, "Rotating SAS bundles").
DEFAULT_HOURS = 24 * 7


def _account(storage: Storage) -> tuple[str, str, str, str]:
    cs = storage.settings.connection_string
    if cs is None:
        raise ConfigError("issuing SAS tokens needs a connection string with the account key")
    parts = dict(p.split("=", 1) for p in cs.get_secret_value().split(";") if "=" in p)
    if "AccountKey" not in parts or "AccountName" not in parts:
        raise ConfigError("the connection string has no AccountName/AccountKey to sign with")
    blob_url = storage.container(storage.names.state_container).primary_endpoint.rsplit("/", 1)[0]
    queue_url = storage.queue(storage.names.events_queue).primary_endpoint.rsplit("/", 1)[0]
    return parts["AccountName"], parts["AccountKey"], blob_url, queue_url


def protocol_for(*endpoints: str) -> str:
    """``https`` for a real account; ``https,http`` only when every endpoint is loopback
    (Azurite on this machine). A plain-HTTP endpoint elsewhere is refused: its tokens would
    travel in clear, and Azure would refuse them anyway."""
    loopback = all(_is_loopback(urlsplit(e).hostname or "") for e in endpoints)
    if loopback:
        return "https,http"
    plain = [e for e in endpoints if urlsplit(e).scheme != "https"]
    if plain:
        raise ConfigError(
            f"{plain[0]} is plain HTTP: SAS bundles work over HTTPS only (loopback excepted)"
        )
    return "https"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _worker_queues(names: Names, role: str, instance: str) -> dict[str, str]:
    role_q, inst_q = names.role_queue(role), names.instance_queue(instance)
    return {
        role_q: "pu",  # process (claim, delete), update (renew a lease)
        # read: peek for a cancel of the running job, claiming nothing (worker/cancels.py)
        inst_q: "rpu",
        names.poison_queue(role_q): "a",
        names.poison_queue(inst_q): "a",
    }


def _worker_containers(names: Names, role: str) -> dict[str, str]:
    return {
        names.payloads_container: "r",
        names.logs_container: "c",
        # its role's reports only, create-only: it speaks for its role at most, and cannot
        # read, overwrite or delete anyone's report
        names.results_container(role): "c",
    }


def issue_worker_sas(storage: Storage, role: str, instance: str, hours: float) -> SasBundle:
    account, key, blob_url, queue_url = _account(storage)
    protocol = protocol_for(blob_url, queue_url)
    names = storage.names
    queues = _worker_queues(names, role, instance)
    containers = _worker_containers(names, role)
    _create(storage, queues, containers)
    now, lifetime = utcnow(), timedelta(hours=hours)

    def policy(grant: Grant) -> Policy:
        return access_policies.policy_for(storage, grant, now, lifetime)

    q_policies = {q: policy(Grant("queue", q, p)) for q, p in queues.items()}
    c_policies = {c: policy(Grant("container", c, p)) for c, p in containers.items()}
    state = names.state_container
    blobs = {
        Names.baseline_blob(role): policy(Grant("container", state, "r", "-r")),
        # read too: at start the worker reads its own record to notice a second agent
        # (worker/registration.py)
        Names.instance_blob(role, instance): policy(Grant("container", state, "rcw", "-w")),
    }
    private_key = enrol(storage, role, instance)  # its reports must carry this key's signature
    signed: dict[str, Any] = {"account_key": key, "protocol": protocol}
    every = [*q_policies.values(), *c_policies.values(), *blobs.values()]
    return SasBundle(
        instance_key=SecretStr(private_key),
        namespace=names.namespace,
        role=role,
        instance=instance,
        blob_endpoint=blob_url,
        queue_endpoint=queue_url,
        expires_at=min(p.expiry for p in every),
        queues={
            q: SecretStr(generate_queue_sas(account, q, policy_id=p.id, **signed))
            for q, p in q_policies.items()
        },
        containers={
            c: SecretStr(generate_container_sas(account, c, policy_id=p.id, **signed))
            for c, p in c_policies.items()
        },
        blobs={
            Names.blob_address(state, b): SecretStr(
                generate_blob_sas(account, state, b, policy_id=p.id, **signed)
            )
            for b, p in blobs.items()
        },
    )


def _create(storage: Storage, queues: dict[str, str], containers: dict[str, str]) -> None:
    storage.ensure_containers()
    for q in queues:
        storage.ensure_queue(q)
    for c in containers:
        storage.ensure_container(c)


@dataclass
class Revoked:
    """What a revocation deleted: policy ids by queue or container."""

    removed: dict[str, list[str]] = field(default_factory=dict)
    #: the shared containers' live generations, which a role's bundles still use
    shared: dict[str, datetime] = field(default_factory=dict)


def revoke_role(storage: Storage, role: str) -> Revoked:
    """Revoke every bundle of ``role`` on what is the role's alone: its queue, the queues of
    its enrolled instances, their poison queues, its results container."""
    names = storage.names
    queues = {names.role_queue(role), names.poison_queue(names.role_queue(role))}
    for instance in enrolled(storage, role):
        inst_q = names.instance_queue(instance)
        queues |= {inst_q, names.poison_queue(inst_q)}
    done = Revoked()
    for q in sorted(queues):
        if gone := access_policies.revoke(storage, "queue", q, None):
            done.removed[q] = gone
    results = names.results_container(role)
    if gone := access_policies.revoke(storage, "container", results, None):
        done.removed[results] = gone
    now = utcnow()
    for c in _shared(names):
        for p in access_policies.read(storage, "container", c):
            if p.expiry > now:
                done.shared[p.id.split("-")[0]] = p.expiry
    return done


def revoke_generation(storage: Storage, generation: str) -> Revoked:
    """Delete one generation (``g…``) from every queue and container of the namespace: every
    bundle issued under it, of every role, stops working."""
    names = storage.names
    done = Revoked()
    for q in storage.list_queues(f"{names.namespace}-"):
        if gone := access_policies.revoke(storage, "queue", q, {generation}):
            done.removed[q] = gone
    for c in storage.list_containers(f"{names.namespace}-"):
        if gone := access_policies.revoke(storage, "container", c, {generation}):
            done.removed[c] = gone
    return done


def _shared(names: Names) -> list[str]:
    return [names.payloads_container, names.logs_container, names.state_container]
