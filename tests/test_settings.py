"""Settings: flags beat environment beat config file beat defaults; secrets stay hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolecall.schemas.errors import ConfigError
from rolecall.schemas.redact import redact
from rolecall.schemas.settings import AuthMode, StorageSettings

KEY = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith(("ROLECALL_", "AZURE_")):
            monkeypatch.delenv(k)


def test_azure_storage_connection_string_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", f"AccountKey={KEY}")
    s = StorageSettings()
    assert s.auth_mode is AuthMode.CONNECTION_STRING
    assert s.connection_string is not None
    assert s.connection_string.get_secret_value().endswith(KEY)


def test_precedence_flag_env_file_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "rolecall.toml"
    cfg.write_text('namespace = "fromfile"\naccount_name = "filename"\nrequest_timeout_s = 7\n')
    monkeypatch.setenv("ROLECALL_CONFIG", str(cfg))
    s = StorageSettings()
    assert (s.namespace, s.account_name, s.request_timeout_s) == ("fromfile", "filename", 7)
    monkeypatch.setenv("ROLECALL_NAMESPACE", "fromenv")
    s = StorageSettings()
    assert (s.namespace, s.account_name) == ("fromenv", "filename")
    s = StorageSettings(namespace="fromflag")
    assert s.namespace == "fromflag"
    monkeypatch.delenv("ROLECALL_CONFIG")
    assert StorageSettings().account_name is None  # default


@pytest.mark.parametrize(
    "suffix,text",
    [
        (".json", '{"namespace": "j"}'),
        (".yaml", "namespace: j\n"),
        (".toml", 'namespace = "j"\n'),
    ],
)
def test_config_file_formats(tmp_path: Path, suffix: str, text: str) -> None:
    cfg = tmp_path / f"c{suffix}"
    cfg.write_text(text)
    assert StorageSettings(config_file=cfg).namespace == "j"


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("namespace = [")
    with pytest.raises(ConfigError, match=r"not valid \.toml"):
        StorageSettings(config_file=cfg)
    with pytest.raises(ConfigError, match="cannot read"):
        StorageSettings(config_file=tmp_path / "missing.json")


def test_auth_mode_order(tmp_path: Path) -> None:
    sas = tmp_path / "sas.json"
    assert StorageSettings(sas_file=sas, connection_string="x").auth_mode is AuthMode.SAS
    assert StorageSettings(connection_string="x").auth_mode is AuthMode.CONNECTION_STRING
    assert StorageSettings(account_name="acct").auth_mode is AuthMode.IDENTITY
    with pytest.raises(ConfigError, match="no storage account configured"):
        _ = StorageSettings().auth_mode


def test_secrets_never_in_repr() -> None:
    s = StorageSettings(connection_string=f"AccountName=a;AccountKey={KEY}")
    assert KEY not in repr(s) and KEY not in str(s) and KEY not in str(s.model_dump())


def test_redact_masks_keys_signatures_and_named_secrets() -> None:
    text = (
        f"conn AccountKey={KEY}; "
        "url https://a.queue.core.windows.net/q?sv=1&sig=abcdEFGH%2Bxyz0123456789 "
        "password hunter22"
    )
    out = redact(text, secrets=["hunter22"])
    assert KEY not in out and "abcdEFGH" not in out and "hunter22" not in out
    assert "AccountKey=***" in out
