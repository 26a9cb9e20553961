"""The operators' settings: the storage account (shared with the worker) plus who signs."""

from __future__ import annotations

import getpass
import socket
from pathlib import Path

from pydantic import Field, SecretStr

from rolecall.controller.published import default_cache_dir
from rolecall.schemas.settings import StorageSettings


def default_issuer() -> str:
    """``user@host`` for run records; ``rolecall`` when the process has no user name, as in a
    container running under a uid with no passwd entry."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    # getuser: OSError from Python 3.13; before it, KeyError from pwd for an unknown uid and
    # ImportError where there is no pwd module (Windows without USERNAME). gethostname: OSError.
    except (OSError, KeyError, ImportError):
        return "rolecall"


class ControllerSettings(StorageSettings):
    signing_key: Path | None = None
    #: keys besides the signing key's own whose signed jobs ``poison requeue`` sends again
    #: (earlier signing keys while workers still trust them); a JSON list from the environment
    trusted_keys: list[Path] = Field(default_factory=list)
    issuer: str = Field(default_factory=default_issuer)
    #: where this machine remembers which payloads are published (controller/published.py)
    cache_dir: Path | None = Field(default_factory=default_cache_dir)
    #: what ``rolecall controller --http`` requires of every request (controller/web/gate.py)
    http_token: SecretStr | None = None
