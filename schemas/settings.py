"""Settings shared by every rolecall process: where the storage account is, how to reach it,
and how the process logs (``rolecall/logs.py``).

Precedence, highest first: explicit values (CLI flags), environment variables, the config
file (``--config`` / ``ROLECALL_CONFIG``: TOML, JSON or YAML, see ``config_file.py``),
defaults. Every field is read from ``ROLECALL_<FIELD>`` (pydantic-settings' ``env_prefix``;
lists such as ``ROLECALL_TRUSTED_KEYS`` are JSON) and from the config-file key ``<field>``.
Credentials are ``SecretStr`` so they never show in ``repr``, logs or tracebacks.

Exactly one way of authenticating is used, chosen in this order:

1. ``sas_file``: a SAS bundle from ``rolecall sas worker`` (least privilege for instances);
2. ``connection_string`` (``AZURE_STORAGE_CONNECTION_STRING`` is honoured);
3. ``account_name`` or explicit endpoints with ``DefaultAzureCredential`` (managed identity).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from rolecall.schemas.config_file import ConfigFileSource
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.names import DEFAULT_NAMESPACE, Names, check_namespace

ENV_PREFIX = "ROLECALL_"

LogLevel = Literal["debug", "info", "warning", "error", "critical"]
#: ``auto``: readable text when stderr is a terminal, JSON lines otherwise (a service).
LogFormat = Literal["auto", "json", "text"]


class AuthMode(str, Enum):
    SAS = "sas"
    CONNECTION_STRING = "connection_string"
    IDENTITY = "identity"


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        # flags and file keys use field names; validation aliases name environment variables
        populate_by_name=True,
    )

    # The two variables that are not ROLECALL_<FIELD>. A validation alias replaces the
    # prefixed name as an environment variable; populate_by_name brings ROLECALL_CONFIG_FILE
    # back, and ROLECALL_CONNECTION_STRING is listed so it keeps beating the Azure variable.
    config_file: Path | None = Field(default=None, validation_alias=f"{ENV_PREFIX}CONFIG")
    connection_string: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            f"{ENV_PREFIX}CONNECTION_STRING", "AZURE_STORAGE_CONNECTION_STRING"
        ),
    )
    account_name: str | None = None
    blob_endpoint: str | None = None
    queue_endpoint: str | None = None
    sas_file: Path | None = None
    namespace: str = DEFAULT_NAMESPACE
    request_timeout_s: float = Field(default=20.0, gt=0)
    #: which certificates TLS trusts: the OS store, certifi's bundle, or auto (the OS store
    #: on Windows, certifi elsewhere); storage/osnet.py
    tls_trust: Literal["auto", "os", "bundled"] = "auto"

    log_level: LogLevel = "info"
    log_format: LogFormat = "auto"

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        return check_namespace(v)

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, v: object) -> object:
        return v.lower() if isinstance(v, str) else v  # ROLECALL_LOG_LEVEL=INFO is fine

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
