"""Who this instance is: role and instance name.

From flags, environment or config first. Otherwise, with ``use_imds``, from Azure Instance
Metadata: the VM name and the ``rolecall-role`` tag, so one Sysprep'd image serves every
instance. The endpoint is configurable; tests point it at a local HTTP server.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

from tenacity import retry, stop_after_attempt, wait_random_exponential

from rolecall.schemas.errors import ConfigError
from rolecall.worker.config import WorkerSettings

ROLE_TAG = "rolecall-role"
IMDS_PATH = "/metadata/instance/compute?api-version=2021-02-01"


@dataclass(frozen=True)
class Identity:
    role: str
    instance: str


def resolve_identity(settings: WorkerSettings) -> Identity:
    role, instance = settings.role, settings.instance
    if (role is None or instance is None) and settings.use_imds:
        compute = fetch_compute_metadata(settings.imds_endpoint)
        instance = instance or compute.get("name") or None
        tags = {t.get("name"): t.get("value") for t in compute.get("tagsList", [])}
        role = role or tags.get(ROLE_TAG) or None
    if not role:
        raise ConfigError(
            "no role: pass --role, set ROLECALL_ROLE, or tag the VM with "
            f"'{ROLE_TAG}' and use --use-imds"
        )
    if not instance:
        raise ConfigError("no instance name: pass --instance, set ROLECALL_INSTANCE, or --use-imds")
    return Identity(role=role, instance=instance)


@retry(
    stop=stop_after_attempt(4), wait=wait_random_exponential(multiplier=0.2, max=2), reraise=True
)
def _get(url: str) -> Any:
    req = urllib.request.Request(url, headers={"Metadata": "true"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=2) as resp:  # noqa: S310
        return json.loads(resp.read())


def fetch_compute_metadata(endpoint: str) -> dict[str, Any]:
    try:
        data = _get(endpoint.rstrip("/") + IMDS_PATH)
    except Exception as e:
        raise ConfigError(f"instance metadata at {endpoint} did not answer: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError("instance metadata returned something other than an object")
    return data
