"""The thin storage layer: the handful of operations rolecall performs (receive, extend a
lease, release, delete, send; get, put and list blobs) on the clients storage/accounts.py
builds from settings.

Policy (retries of whole jobs, poison, lease renewal, back-off) lives in the worker and the
controller; this module only translates SDK calls and errors into rolecall's vocabulary, and
counts every transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

from rolecall.schemas.errors import (
    AccessDenied,
    ConcurrencyConflict,
    NotFound,
    RolecallError,
)
from rolecall.schemas.names import Names
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.accounts import Account
from rolecall.storage.items import BlobData, BlobItem, Message
from rolecall.storage.meter import Meter
from rolecall.storage.retry import PATIENT

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient

__all__ = ["BlobData", "BlobItem", "Message", "Storage"]  # the items: storage/items.py

#: Queue messages never expire on their own: a job addressed to an instance must wait for it
#: through a reimage, however long; ``not_after`` is how a job says it is no longer wanted.
NEVER_EXPIRE = -1


class Storage:
    """Queue and blob access for one namespace, with every request metered."""

    def __init__(self, settings: StorageSettings, *, meter: Meter | None = None) -> None:
        self.settings = settings
        self.names: Names = settings.names
        self.meter = meter or Meter()
        self.account = Account(settings, self.meter)
        #: every failed attempt is counted by kind (``Meter.errors``), retried or not
        self._call = PATIENT.observed(self.meter.error).call

    @property
    def blob_endpoint(self) -> str:
        """The blob service's URL: which account this is, for caches keyed by account."""
        return self.account.blob_endpoint

    # --- clients (storage/accounts.py) ---------------------------------------------------

    def queue(self, name: str) -> QueueClient:
        return self.account.queue(name)

    def container(self, name: str) -> ContainerClient:
        return self.account.container(name)

    def blob(self, container: str, path: str) -> BlobClient:
        return self.account.blob(container, path)

    # --- provisioning ------------------------------------------------------------------

    def ensure_queue(self, name: str) -> None:
        """Create a queue if missing. Without the right to create (a SAS bundle, a
        least-privilege identity) assume it exists: using it will say clearly if not."""
        if self.account.bundle is not None:
            return
        try:
            self._call(f"create queue {name}", self.queue(name).create_queue)
        except AccessDenied:
            return  # least-privilege identities may not create; the deployment did
        except ConcurrencyConflict:
            # It exists: the service answers 204 (409 if its metadata differs) and the SDK
            # raises ResourceExistsError(QueueAlreadyExists) for both, which retry.translate
            # makes a ConcurrencyConflict. A queue being deleted is a 409 too; its next use
            # says so.
            return

    def ensure_container(self, name: str) -> None:
        """Create a container if missing, where the credentials allow (see ensure_queue)."""
        if self.account.bundle is not None:
            return
        try:
            self._call(f"create container {name}", self.container(name).create_container)
        except (AccessDenied, ConcurrencyConflict):
            return  # not ours to create, or there already

    def ensure_containers(self) -> None:
        if self.account.bundle is not None:
            return
        for name in self.names.containers:
            try:
                self._call(f"create container {name}", self.container(name).create_container)
            except AccessDenied:
                return  # least-privilege identities may not create; the deployment did
            except ConcurrencyConflict:
                continue  # 409 ContainerAlreadyExists

    # --- queue operations --------------------------------------------------------------

    def receive(self, queue: str, *, max_messages: int, visibility_s: int) -> list[Message]:
        """Claim up to ``max_messages`` (<= 32) for ``visibility_s`` seconds: one transaction."""
        client = self.queue(queue)

        def once() -> list[Any]:
            pages = client.receive_messages(
                messages_per_page=max_messages,
                max_messages=max_messages,
                visibility_timeout=visibility_s,
            ).by_page()
            return list(next(pages, []))

        return [
            Message(
                queue=queue,
                id=m.id,
                pop_receipt=m.pop_receipt,
                dequeue_count=m.dequeue_count or 0,
                content=m.content or "",
                next_visible_on=m.next_visible_on,
                inserted_on=m.inserted_on,
            )
            for m in self._call(f"receive from {queue}", once)
        ]

    def peek(self, queue: str, max_messages: int = 32) -> list[Message]:
        items = self._call(
            f"peek {queue}", self.queue(queue).peek_messages, max_messages=max_messages
        )
        return [
            Message(queue, m.id, "", m.dequeue_count or 0, m.content or "", None, m.inserted_on)
            for m in items
        ]

    def extend(self, msg: Message, visibility_s: int, content: str | None = None) -> Message:
        """Set the message's visibility; returns it with the new pop receipt.

        Every update returns a new pop receipt and the old one is dead from then on: callers
        must use the returned message. A stale receipt raises LeaseLost.
        """
        r = self._call(
            f"extend lease on {msg.queue}",
            self.queue(msg.queue).update_message,
            msg.id,
            pop_receipt=msg.pop_receipt,
            visibility_timeout=visibility_s,
            content=content,
        )
        return Message(
            msg.queue,
            msg.id,
            r.pop_receipt or "",
            msg.dequeue_count,
            msg.content if content is None else content,
            r.next_visible_on,
            msg.inserted_on,
        )

    def release(self, msg: Message) -> None:
        """Give a claimed message back: visible again at once, to anyone (its dequeue count
        stays raised). Raises LeaseLost if the claim had already lapsed or moved on."""
        self.extend(msg, 0)

    def delete(self, msg: Message) -> bool:
        """Delete a claimed message. False if it was already gone (a retried delete)."""
        try:
            self._call(
                f"delete from {msg.queue}",
                self.queue(msg.queue).delete_message,
                msg.id,
                pop_receipt=msg.pop_receipt,
            )
        except NotFound:
            return False
        return True

    def send(self, queue: str, text: str, *, delay_s: int = 0, create: bool = False) -> str:
        """Add a message; with ``create``, make the queue first if it does not exist yet
        (poison queues appear on first use)."""
        try:
            r = self._call(
                f"send to {queue}",
                self.queue(queue).send_message,
                text,
                visibility_timeout=delay_s or None,
                time_to_live=NEVER_EXPIRE,
            )
        except NotFound:
            if not create:
                raise
            self.ensure_queue(queue)
            return self.send(queue, text, delay_s=delay_s)
        return str(r.id)

    def approximate_count(self, queue: str) -> int:
        props = self._call(f"count {queue}", self.queue(queue).get_queue_properties)
        return int(props.approximate_message_count or 0)

    def list_queues(self, prefix: str) -> list[str]:
        svc = self.account.queue_service
        if svc is None:
            raise AccessDenied("listing queues needs an account-level credential")
        return self._call(
            "list queues", lambda: [q.name for q in svc.list_queues(name_starts_with=prefix)]
        )

    # --- blob operations ---------------------------------------------------------------

    def get_blob(self, container: str, path: str) -> BlobData:
        client = self.blob(container, path)

        def once() -> BlobData:
            stream = client.download_blob()
            data = stream.readall()
            props = stream.properties
            return BlobData(data, str(props.etag), dict(props.metadata or {}), props.last_modified)

        return self._call(f"read {container}/{path}", once)

    def put_blob(
        self,
        container: str,
        path: str,
        data: bytes,
        *,
        etag: str | None = None,
        create_only: bool = False,
        metadata: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> str:
        """Write a blob; ``etag`` makes it conditional (optimistic concurrency), and
        ``create_only`` refuses to overwrite. Either raises ConcurrencyConflict on a race."""
        from azure.core import MatchConditions
        from azure.storage.blob import ContentSettings

        kwargs: dict[str, Any] = {
            "overwrite": not create_only,
            "metadata": metadata,
            "content_settings": ContentSettings(content_type=content_type),
        }
        if etag is not None:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        client = self.blob(container, path)
        result = self._call(f"write {container}/{path}", lambda: client.upload_blob(data, **kwargs))
        return str(result.get("etag", ""))

    def blob_size(self, container: str, path: str) -> int | None:
        """Size of a blob, or None if it does not exist (one HEAD request)."""
        try:
            props = self._call(
                f"stat {container}/{path}", self.blob(container, path).get_blob_properties
            )
        except NotFound:
            return None
        return int(props.size)

    def list_blobs(
        self,
        container: str,
        prefix: str,
        *,
        metadata: bool = False,
        limit: int | None = None,
        page_size: int | None = None,
        skip: Callable[[str], bool] | None = None,
    ) -> list[BlobItem]:
        """Blobs under ``prefix`` in name order; at most ``limit`` of them (the rest are
        left for the next call), ``page_size`` to a List Blobs request (5,000 at most),
        leaving out the names ``skip`` says to (they do not count against ``limit``)."""
        client = self.container(container)
        include = ["metadata"] if metadata else None

        def once() -> list[BlobItem]:
            found: list[BlobItem] = []
            pages = client.list_blobs(
                name_starts_with=prefix, include=include, results_per_page=page_size
            ).by_page()
            for page in pages:
                for b in page:
                    if skip is not None and skip(b.name):
                        continue
                    meta, size = dict(b.metadata or {}), int(b.size or 0)
                    found.append(BlobItem(b.name, meta, size, b.last_modified, str(b.etag or "")))
                if limit is not None and len(found) >= limit:
                    return found[:limit]
            return found

        return self._call(f"list {container}/{prefix}", once)

    def try_lease(self, container: str, path: str, duration_s: int) -> str | None:
        """Take a blob lease (a distributed lock that expires by itself), creating the blob
        if needed. None if someone else holds it."""
        client = self.blob(container, path)
        for _ in range(2):
            try:
                lease = self._call(f"lease {container}/{path}", client.acquire_lease, duration_s)
            except ConcurrencyConflict:
                return None  # 409 LeaseAlreadyPresent
            except NotFound:
                with contextlib.suppress(ConcurrencyConflict):
                    self.put_blob(container, path, b"", create_only=True, content_type="text/plain")
                continue
            return str(lease.id)
        return None

    def renew_lease(self, container: str, path: str, lease_id: str) -> None:
        """Keep a lease held (a lease holder that stops renewing loses it after its
        duration). Raises ConcurrencyConflict if someone else holds it by now."""
        from azure.storage.blob import BlobLeaseClient

        lease = BlobLeaseClient(self.blob(container, path), lease_id=lease_id)
        self._call(f"renew lease on {container}/{path}", lease.renew)

    def release_lease(self, container: str, path: str, lease_id: str) -> None:
        from azure.storage.blob import BlobLeaseClient

        lease = BlobLeaseClient(self.blob(container, path), lease_id=lease_id)
        with contextlib.suppress(RolecallError):
            self._call(f"release {container}/{path}", lease.release)

    def list_containers(self, prefix: str) -> list[str]:
        svc = self.account.blob_service
        if svc is None:
            raise AccessDenied("listing containers needs an account-level credential")
        return self._call(
            "list containers",
            lambda: [c.name for c in svc.list_containers(name_starts_with=prefix)],
        )

    def delete_blobs(self, container: str, paths: list[str]) -> None:
        """Delete many blobs in batches of 256 (the Blob Batch limit): one request a batch.
        Blobs already gone are not an error. Azure bills each delete in a batch as well as
        the batch, so the meter counts them too (the hook sees only the batch request)."""
        client = self.container(container)
        for i in range(0, len(paths), 256):
            chunk = paths[i : i + 256]
            self._call(
                f"delete {len(chunk)} blobs from {container}",
                lambda chunk=chunk: client.delete_blobs(*chunk, raise_on_any_failure=False),  # type: ignore[misc]
            )
            self.meter.add("blob.delete", len(chunk))

    def delete_blob(self, container: str, path: str) -> None:
        with contextlib.suppress(NotFound):
            self._call(f"delete {container}/{path}", self.blob(container, path).delete_blob)

    def close(self) -> None:
        self.account.close()
