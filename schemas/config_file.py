"""The config file (``--config`` / ``ROLECALL_CONFIG``), read by pydantic-settings' own sources.

The file's suffix picks the source: ``.toml``, ``.yaml``/``.yml``, anything else JSON. What
the library sources leave to us, and why:

* they skip a file that does not exist; a file someone named must exist, or the worker would
  boot on defaults and claim work it is not configured for;
* they ``dict.update`` whatever the file holds, so a YAML scalar fails obscurely and a JSON
  list of two-letter strings becomes settings; the file must hold a mapping;
* ``tomllib`` refuses a UTF-8 byte-order mark, which Windows PowerShell 5.1 writes with
  ``Out-File -Encoding utf8``; JSON and YAML are opened as ``utf-8-sig`` for the same reason;
* keys may be spelled with dashes (``poll-max-s``), as the flags are.

Every failure is one line naming the file, raised as :class:`ConfigError`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from rolecall.schemas.errors import ConfigError

if TYPE_CHECKING:  # only newer pydantic-settings have it; Python 3.10 gets an older one
    from pydantic_settings.sources.types import Traversable

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

#: How the file's own path may appear among settings: the field and its environment alias.
PATH_KEYS = ("config_file", "rolecall_config")


class ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by an earlier source: a flag (init kwargs) or the environment."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        state = {k.lower(): v for k, v in self.current_state.items()}
        path = next((state[k] for k in PATH_KEYS if state.get(k)), None)
        if not path:
            return {}
        return file_source(self.settings_cls, Path(path))()


def file_source(settings_cls: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    """The library source for ``path``'s format, its file already read and checked."""
    try:
        with path.open("rb"):  # a directory or an unreadable file fails here, not later
            pass
        if path.suffix == ".toml":
            return _TomlFile(settings_cls, path)
        if path.suffix in (".yaml", ".yml"):
            return _YamlFile(settings_cls, path, yaml_file_encoding="utf-8-sig")
        return _JsonFile(settings_cls, path, json_file_encoding="utf-8-sig")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except ValueError as e:  # TOML, JSON and undecodable bytes; YAML's errors are made so below
        detail = " ".join(str(e).split())  # YAML's messages span lines; ours is one
        raise ConfigError(
            f"config file {path} is not valid {path.suffix or 'JSON'}: {detail}"
        ) from e


def _settings(data: object, path: Path | Traversable) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    keys = {str(k).replace("-", "_"): v for k, v in data.items()}
    return {k: v for k, v in keys.items() if k.lower() not in PATH_KEYS}


class _TomlFile(TomlConfigSettingsSource):
    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        # the library opens the file as bytes for tomllib, which refuses a byte-order mark
        return _settings(tomllib.loads(file_path.read_text(encoding="utf-8-sig")), file_path)


class _JsonFile(JsonConfigSettingsSource):
    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        return _settings(super()._read_file(file_path), file_path)


class _YamlFile(YamlConfigSettingsSource):
    def _read_file(self, file_path: Path | Traversable) -> dict[str, Any]:
        import yaml  # the library imports it lazily too: most installations never read YAML

        try:
            data = super()._read_file(file_path)
        except yaml.YAMLError as e:
            raise ValueError(str(e)) from e
        return _settings(data, file_path)
