"""Settings shared by every rolecall process: where the storage account is and how to reach it.

Precedence, highest first: explicit values (CLI flags), environment variables, the config
file (``--config`` / ``ROLECALL_CONFIG``: TOML, JSON or YAML), defaults. Credentials are
``SecretStr`` so they never show in ``repr``, logs or tracebacks.

Exactly one way of authenticating is used, chosen in this order:

1. ``sas_file``: a SAS bundle from ``rolecall sas worker`` (least privilege for instances);
2. ``connection_string`` (``AZURE_STORAGE_CONNECTION_STRING`` is honoured);
3. ``account_name`` or explicit endpoints with ``DefaultAzureCredential`` (managed identity).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rolecall.schemas.errors import ConfigError
from rolecall.schemas.names import DEFAULT_NAMESPACE, Names, check_namespace

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]


class AuthMode(str, Enum):
    SAS = "sas"
    CONNECTION_STRING = "connection_string"
    IDENTITY = "identity"


def env_alias(name: str, *env: str) -> AliasChoices:
    return AliasChoices(name, f"ROLECALL_{name.upper()}", *env)


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    config_file: Path | None = Field(
        default=None, validation_alias=env_alias("config", "config_file")
    )
    connection_string: SecretStr | None = Field(
        default=None,
        validation_alias=env_alias("connection_string", "AZURE_STORAGE_CONNECTION_STRING"),
    )
    account_name: str | None = Field(default=None, validation_alias=env_alias("account_name"))
    blob_endpoint: str | None = Field(default=None, validation_alias=env_alias("blob_endpoint"))
    queue_endpoint: str | None = Field(default=None, validation_alias=env_alias("queue_endpoint"))
    sas_file: Path | None = Field(default=None, validation_alias=env_alias("sas_file"))
    namespace: str = Field(default=DEFAULT_NAMESPACE, validation_alias=env_alias("namespace"))
    request_timeout_s: float = Field(
        default=20.0, gt=0, validation_alias=env_alias("request_timeout_s")
    )

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return check_namespace(v)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, ConfigFileSource(settings_cls))

    @property
    def names(self) -> Names:
        return Names(self.namespace)

    @property
    def auth_mode(self) -> AuthMode:
        if self.sas_file is not None:
            return AuthMode.SAS
        if self.connection_string is not None:
            return AuthMode.CONNECTION_STRING
        if self.account_name or (self.blob_endpoint and self.queue_endpoint):
            return AuthMode.IDENTITY
        raise ConfigError(
            "no storage account configured: set AZURE_STORAGE_CONNECTION_STRING, or "
            "ROLECALL_ACCOUNT_NAME (managed identity), or ROLECALL_SAS_FILE; "
            "for a local emulator run `rolecall dev azurite`"
        )

    def endpoints(self) -> tuple[str, str]:
        """(blob, queue) service URLs for identity and SAS modes."""
        if self.blob_endpoint and self.queue_endpoint:
            return self.blob_endpoint.rstrip("/"), self.queue_endpoint.rstrip("/")
        if not self.account_name:
            raise ConfigError("identity and SAS modes need ROLECALL_ACCOUNT_NAME or both endpoints")
        a = self.account_name
        return f"https://{a}.blob.core.windows.net", f"https://{a}.queue.core.windows.net"


_CONFIG_KEYS = ("config_file", "config", "rolecall_config")


class ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by ``config_file`` from an earlier source (flag or env)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        state = {k.lower(): v for k, v in self.current_state.items()}
        path = next((state[k] for k in _CONFIG_KEYS if state.get(k)), None)
        if not path:
            return {}
        return load_config_file(Path(path))


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:
        raise ConfigError(f"config file {path} is not valid {path.suffix or 'JSON'}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    data.pop("config_file", None)
    return {str(k).replace("-", "_"): v for k, v in data.items()}
