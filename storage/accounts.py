"""The SDK clients for one storage account, built from settings by its one way of
authenticating (SAS bundle, connection string, or identity), cached per queue and container.

Every client shares the transport settings (storage/transport.py) and reports each request to
the meter, with the SDK's own retries off: storage/retry.py is the only retry layer.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AzureSasCredential
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient, QueueServiceClient

from rolecall.schemas.access import SasBundle
from rolecall.schemas.codec import decode_document
from rolecall.schemas.errors import AccessDenied, ConfigError
from rolecall.schemas.names import Names
from rolecall.schemas.settings import AuthMode, StorageSettings
from rolecall.storage.meter import Meter
from rolecall.storage.transport import identity_credential, transport_settings

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient


class Account:
    """Clients for one account; ``bundle`` is set in SAS mode, the service clients otherwise."""

    def __init__(self, settings: StorageSettings, meter: Meter) -> None:
        self.names: Names = settings.names
        self._lock = threading.Lock()
        self._queues: dict[str, QueueClient] = {}
        self._containers: dict[str, ContainerClient] = {}
        self.mode = settings.auth_mode
        self.bundle: SasBundle | None = None
        self.queue_service: QueueServiceClient | None = None
        self.blob_service: BlobServiceClient | None = None
        common: dict[str, Any] = {
            "retry_total": 0,  # tenacity retries at our level; see storage.retry
            "connection_timeout": min(10.0, settings.request_timeout_s),
            "read_timeout": settings.request_timeout_s,
            **transport_settings(settings.tls_trust),
        }
        self._qkw = {**common, "raw_request_hook": meter.hook("queue")}
        self._bkw = {**common, "raw_request_hook": meter.hook("blob")}
        if self.mode is AuthMode.CONNECTION_STRING:
            assert settings.connection_string is not None
            cs = settings.connection_string.get_secret_value()
            try:
                self.queue_service = QueueServiceClient.from_connection_string(cs, **self._qkw)
                self.blob_service = BlobServiceClient.from_connection_string(cs, **self._bkw)
            except ValueError as e:
                raise ConfigError("the storage connection string is malformed") from e
        elif self.mode is AuthMode.IDENTITY:
            blob_url, queue_url = settings.endpoints()
            credential = identity_credential()
            self.queue_service = QueueServiceClient(queue_url, credential=credential, **self._qkw)
            self.blob_service = BlobServiceClient(blob_url, credential=credential, **self._bkw)
        else:
            assert settings.sas_file is not None
            try:
                raw = settings.sas_file.read_bytes()
            except OSError as e:
                raise ConfigError(f"cannot read SAS file {settings.sas_file}: {e.strerror}") from e
            self.bundle = decode_document(raw, SasBundle)
            if self.bundle.namespace != self.names.namespace:
                raise ConfigError(
                    f"SAS file is for namespace {self.bundle.namespace!r}, "
                    f"not {self.names.namespace!r}"
                )

    @property
    def blob_endpoint(self) -> str:
        """The blob service's URL: which account this is, for caches keyed by account."""
        if self.blob_service is not None:
            return str(self.blob_service.url).rstrip("/")
        assert self.bundle is not None
        return self.bundle.blob_endpoint.rstrip("/")

    def queue(self, name: str) -> QueueClient:
        with self._lock:
            client = self._queues.get(name)
            if client is None:
                if self.queue_service is not None:
                    client = self.queue_service.get_queue_client(name)
                else:
                    assert self.bundle is not None
                    token = self.bundle.queues.get(name)
                    if token is None:
                        raise AccessDenied(f"the SAS file grants no access to queue {name}")
                    client = QueueClient(
                        self.bundle.queue_endpoint,
                        name,
                        credential=AzureSasCredential(token.get_secret_value()),
                        **self._qkw,
                    )
                self._queues[name] = client
            return client

    def container(self, name: str) -> ContainerClient:
        with self._lock:
            client = self._containers.get(name)
            if client is None:
                if self.blob_service is not None:
                    client = self.blob_service.get_container_client(name)
                else:
                    assert self.bundle is not None
                    token = self.bundle.containers.get(name)
                    credential = AzureSasCredential(token.get_secret_value()) if token else None
                    client = ContainerClient(
                        self.bundle.blob_endpoint, name, credential=credential, **self._bkw
                    )
                self._containers[name] = client
            return client

    def blob(self, container: str, path: str) -> BlobClient:
        if self.bundle is not None:
            token = self.bundle.blobs.get(Names.blob_address(container, path))
            if token is not None:
                from azure.storage.blob import BlobClient

                return BlobClient(
                    self.bundle.blob_endpoint,
                    container,
                    path,
                    credential=AzureSasCredential(token.get_secret_value()),
                    **self._bkw,
                )
            if container not in self.bundle.containers:
                raise AccessDenied(f"the SAS file grants no access to blob {container}/{path}")
        return self.container(container).get_blob_client(path)

    def close(self) -> None:
        clients = [self.queue_service, self.blob_service, *self._queues.values()]
        for c in [*clients, *self._containers.values()]:
            if c is not None:
                c.close()
