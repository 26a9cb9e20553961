"""Stored access policies: what makes a worker's SAS bundle revocable.

A SAS signed with the account key is valid until it expires, unless it names a stored access
policy on its queue or container: then the policy holds its permissions and lifetime, and
deleting the policy revokes every token issued under it at once (Azure: within 30 seconds;
Azurite: at once). Facts that force the design:

* A queue or container holds **at most five** policies. Bundles cannot have one each: every
  worker of a role shares the role queue, and every role shares the payloads, logs and
  state containers. So policies are **generations**: ``g<YYYYMMDDHHMMSS>`` (its creation
  time), shared by every bundle issued while it was current. The state container grants
  two things (read a baseline; read and write an instance record), so its policies carry a suffix:
  ``g…-r`` and ``g…-w``; a blob SAS takes its permissions from the policy it names, so one
  policy for both would let a worker rewrite its baseline.
* Azurite refuses a SAS that names a policy and also sets permissions, start or expiry
  (Azure only refuses overlaps): so the policy holds all three, and a bundle lives as long
  as its generation.
* Issuing reuses the newest live generation of a resource while it has at least half the
  asked-for lifetime left, and otherwise starts a new one; expired generations are removed
  as it goes. With that rule two generations are alive at most (the next starts after half
  the previous one's life), four policies on the state container: within five.

Revoking a role (``rolecall sas revoke ROLE``) deletes every policy on that role's own queues
(role, instances, their poison queues) and its results container: its bundles can no longer
claim, renew, poison or report. The shared containers cannot be revoked per role without
revoking every role: ``rolecall sas revoke --policy g…`` does that, after re-issuing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from azure.storage.blob import AccessPolicy as BlobPolicy
from azure.storage.queue import AccessPolicy as QueuePolicy

from rolecall.schemas.errors import ConfigError, NotFound
from rolecall.storage.clients import Storage
from rolecall.storage.retry import call

#: Azure's limit on stored access policies per queue or container.
POLICY_LIMIT = 5
#: Clock skew between the issuer and Azure: a generation starts a little in the past.
SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Grant:
    """What one bundle needs on one queue or container: a permission string in the SDK's
    order (``"rup"``, ``"c"``) and the suffix that tells two grants on one resource apart."""

    kind: Literal["queue", "container"]
    name: str
    permission: str
    suffix: str = ""


@dataclass(frozen=True)
class Policy:
    id: str
    permission: str
    expiry: datetime


def generation_id(now: datetime) -> str:
    return f"g{now:%Y%m%d%H%M%S}"


def policy_for(storage: Storage, grant: Grant, now: datetime, lifetime: timedelta) -> Policy:
    """The policy a new bundle's token for ``grant`` names: the newest live generation with
    at least half of ``lifetime`` left, or a new generation (expired ones are dropped)."""
    policies = {p.id: p for p in read(storage, grant.kind, grant.name) if p.expiry > now}
    usable = [
        p
        for p in policies.values()
        if _suffix(p.id) == grant.suffix
        and set(p.permission) == set(grant.permission)
        and p.expiry - now >= lifetime / 2
    ]
    if usable:
        return max(usable, key=lambda p: p.expiry)
    new = Policy(generation_id(now) + grant.suffix, grant.permission, now + lifetime)
    policies[new.id] = new
    if len(policies) > POLICY_LIMIT:
        live = ", ".join(sorted(policies))
        raise ConfigError(
            f"{grant.kind} {grant.name} already has {POLICY_LIMIT} stored access policies "
            f"({live}); revoke an old generation first: rolecall sas revoke --policy ID"
        )
    write(storage, grant.kind, grant.name, list(policies.values()), start=now - SKEW)
    return new


def revoke(
    storage: Storage, kind: Literal["queue", "container"], name: str, ids: set[str] | None
) -> list[str]:
    """Delete the policies ``ids`` (every one if None) from a queue or container; the ids
    deleted. A generation's id revokes its suffixed policies too."""
    try:
        policies = read(storage, kind, name)
    except NotFound:
        return []
    gone = [p.id for p in policies if ids is None or p.id.split("-")[0] in ids]
    if gone:
        keep = [p for p in policies if p.id not in gone]
        write(storage, kind, name, keep, start=None)
    return gone


def read(storage: Storage, kind: Literal["queue", "container"], name: str) -> list[Policy]:
    if kind == "queue":
        found: dict[str, Any] = call(
            f"get access policies of {name}", storage.queue(name).get_queue_access_policy
        )
        items = list(found.items())
    else:
        acl = call(
            f"get access policies of {name}", storage.container(name).get_container_access_policy
        )
        items = [(s.id, s.access_policy) for s in acl["signed_identifiers"]]
    return [
        Policy(pid, str(p.permission or ""), _utc(p.expiry))
        for pid, p in items
        if p is not None and p.expiry
    ]


def write(
    storage: Storage,
    kind: Literal["queue", "container"],
    name: str,
    policies: list[Policy],
    *,
    start: datetime | None,
) -> None:
    """Replace a resource's policies (Set ACL replaces the whole list). Kept policies are
    written again with their own expiry; ``start`` is only for new ones, and harmless for
    old ones (a start in the past changes nothing)."""
    if kind == "queue":
        queue = {p.id: QueuePolicy(permission=p.permission, expiry=p.expiry, start=start)
                 for p in policies}  # fmt: skip
        call(f"set access policies of {name}", storage.queue(name).set_queue_access_policy, queue)
    else:
        blob = {p.id: BlobPolicy(permission=p.permission, expiry=p.expiry, start=start)
                for p in policies}  # fmt: skip
        client = storage.container(name)
        call(f"set access policies of {name}", client.set_container_access_policy, blob)


def _suffix(policy_id: str) -> str:
    _, dash, rest = policy_id.partition("-")
    return dash + rest


def _utc(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
