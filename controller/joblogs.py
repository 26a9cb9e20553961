"""Reading a target's full log for ``rolecall logs``: only a blob that can be a log.

A worker's credential creates blobs of any size in the logs container (a SAS cannot cap a
size), and a completion names its own log. The fold already refuses a completion whose log
is not in the logs container under this attempt's name (controller/reports.py); here the
size is checked from the blob's properties before any of it is read, and a blob larger than
any log a worker writes (``LOG_MAX_BYTES``, worker/joblog.py) is not served.
"""

from __future__ import annotations

import io

from rolecall.schemas.base import LOG_MAX_BYTES
from rolecall.schemas.errors import ContractError, NotFound, PayloadTooLarge
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from rolecall.storage.streams import download_to


class NotALog(ContractError):
    reason = "not_a_log"


def read_log(storage: Storage, address: str) -> str:
    container, path = Names.split_blob_address(address)
    if container != storage.names.logs_container:
        raise NotALog(f"{address[:120]!r} is not in the logs container; not shown")
    size = storage.blob_size(container, path)
    if size is None:
        raise NotFound(f"log {address} is not there (deleted, or never written)")
    if size > LOG_MAX_BYTES:
        raise NotALog(_too_large(address, size))
    out = io.BytesIO()
    try:  # the size is checked again on the way: the blob may have changed since
        download_to(storage, container, path, out, LOG_MAX_BYTES)
    except PayloadTooLarge as e:
        raise NotALog(_too_large(address, LOG_MAX_BYTES + 1)) from e
    return out.getvalue().decode("utf-8", "replace")


def _too_large(address: str, size: int) -> str:
    return (f"log {address} is {size:,} bytes, more than any worker writes "
            f"({LOG_MAX_BYTES:,}); not shown")  # fmt: skip
