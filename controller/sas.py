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
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from azure.storage.blob import (
    BlobSasPermissions,
    ContainerSasPermissions,
    generate_blob_sas,
    generate_container_sas,
)
from azure.storage.queue import QueueSasPermissions, generate_queue_sas
from pydantic import SecretStr

from rolecall.controller.enrolment import enrol
from rolecall.schemas.access import SasBundle
from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage


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


def _worker_queues(names: Names, role: str, instance: str) -> dict[str, QueueSasPermissions]:
    role_q, inst_q = names.role_queue(role), names.instance_queue(instance)
    return {
        role_q: QueueSasPermissions(process=True, update=True),
        # read: peek for a cancel of the running job, claiming nothing (worker/cancels.py)
        inst_q: QueueSasPermissions(read=True, process=True, update=True),
        names.poison_queue(role_q): QueueSasPermissions(add=True),
        names.poison_queue(inst_q): QueueSasPermissions(add=True),
    }


def issue_worker_sas(storage: Storage, role: str, instance: str, hours: float) -> SasBundle:
    account, key, blob_url, queue_url = _account(storage)
    names = storage.names
    start = utcnow() - timedelta(minutes=5)  # clock skew between issuer and Azure
    expiry = utcnow() + timedelta(hours=hours)
    queues = _worker_queues(names, role, instance)
    storage.ensure_containers()
    for q in queues:
        storage.ensure_queue(q)
    results = names.results_container(role)
    storage.ensure_container(results)
    containers = {
        names.payloads_container: ContainerSasPermissions(read=True),
        names.logs_container: ContainerSasPermissions(create=True),
        # its role's reports only, create-only: it speaks for its role at most, and cannot
        # read, overwrite or delete anyone's report
        results: ContainerSasPermissions(create=True),
    }
    blobs = {
        (names.state_container, Names.baseline_blob(role)): BlobSasPermissions(read=True),
        (names.state_container, Names.instance_blob(role, instance)): BlobSasPermissions(
            read=True, create=True, write=True
        ),
    }
    signed: dict[str, Any] = {"account_key": key, "expiry": expiry, "start": start}
    private_key = enrol(storage, role, instance)  # its reports must carry this key's signature
    return SasBundle(
        instance_key=SecretStr(private_key),
        namespace=names.namespace,
        role=role,
        instance=instance,
        blob_endpoint=blob_url,
        queue_endpoint=queue_url,
        expires_at=expiry,
        queues={
            q: SecretStr(generate_queue_sas(account, q, permission=p, **signed))
            for q, p in queues.items()
        },
        containers={
            c: SecretStr(generate_container_sas(account, c, permission=p, **signed))
            for c, p in containers.items()
        },
        blobs={
            Names.blob_address(c, b): SecretStr(
                generate_blob_sas(account, c, b, permission=p, **signed)
            )
            for (c, b), p in blobs.items()
        },
    )
