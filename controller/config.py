"""The operators' settings: the storage account (shared with the worker) plus who signs."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from pydantic import Field

from rolecall.schemas.settings import StorageSettings, env_alias


def default_issuer() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        return "rolecall"


class ControllerSettings(StorageSettings):
    signing_key: Path | None = Field(default=None, validation_alias=env_alias("signing_key"))
    issuer: str = Field(default_factory=default_issuer, validation_alias=env_alias("issuer"))
