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


# --- environment: ROLECALL_<FIELD>, plus the Azure variable ------------------------------

REPO = Path(__file__).resolve().parents[1]
#: Set for a job's child process (docs/worker.md), or by the dev tools: not settings.
NOT_SETTINGS = {"JOB_ID", "RUN_ID", "INCARNATION", "ATTEMPT", "AZURITE"}


def test_every_variable_the_docs_and_deploy_files_name_is_a_setting() -> None:
    """An operator copies ROLECALL_* names from these files; each must reach a field."""
    import re

    from rolecall.controller.config import ControllerSettings
    from rolecall.worker.config import WorkerSettings

    files = [*REPO.glob("docs/*.md"), *REPO.glob("deploy/**/*"), REPO / "README.md"]
    text = "".join(p.read_text(errors="replace") for p in files if p.is_file())
    named = set(re.findall(r"ROLECALL_([A-Z0-9_]+)", text)) - NOT_SETTINGS
    fields = {*WorkerSettings.model_fields, *ControllerSettings.model_fields, "config"}
    assert named, "no ROLECALL_ variables found: has the layout moved?"
    assert {n for n in named if n.lower() not in fields} == set()


def test_worker_variables_are_the_prefixed_field_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from rolecall.worker.config import WorkerSettings

    for name, value in {
        "ROLE": "web", "INSTANCE": "web-0", "STATE_DIR": "/srv/rc", "USE_IMDS": "true",
        "LEASE_S": "90", "POLL_MAX_S": "2.5", "REBOOT_COMMAND": "shutdown -r now",
        "TRUSTED_KEYS": '["/etc/rolecall/a.pub", "/etc/rolecall/b.pub"]',
    }.items():  # fmt: skip
        monkeypatch.setenv(f"ROLECALL_{name}", value)
    s = WorkerSettings()
    assert (s.role, s.instance, s.state_dir, s.use_imds) == ("web", "web-0", Path("/srv/rc"), True)
    assert (s.lease_s, s.poll_max_s, s.reboot_command) == (90, 2.5, "shutdown -r now")
    assert s.trusted_keys == [Path("/etc/rolecall/a.pub"), Path("/etc/rolecall/b.pub")]


def test_controller_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from rolecall.controller.config import ControllerSettings

    monkeypatch.setenv("ROLECALL_SIGNING_KEY", "/keys/controller.key")
    monkeypatch.setenv("ROLECALL_ISSUER", "release-pipeline")
    s = ControllerSettings()
    assert (s.signing_key, s.issuer) == (Path("/keys/controller.key"), "release-pipeline")


def test_unprefixed_variables_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shell's ROLE or NAMESPACE (or a container's) must not become the worker's identity."""
    from rolecall.worker.config import WorkerSettings

    for name in ("ROLE", "INSTANCE", "NAMESPACE", "CONNECTION_STRING", "CONFIG", "CONFIG_FILE"):
        monkeypatch.setenv(name, "stray")
    s = WorkerSettings()
    assert (s.role, s.instance, s.namespace) == (None, None, "rc")
    assert s.connection_string is None and s.config_file is None


def test_connection_string_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """flag > ROLECALL_CONNECTION_STRING > AZURE_STORAGE_CONNECTION_STRING > config file."""

    def secret(s: StorageSettings) -> str | None:
        return None if s.connection_string is None else s.connection_string.get_secret_value()

    cfg = tmp_path / "rolecall.json"
    cfg.write_text('{"connection_string": "AccountName=file"}')
    monkeypatch.setenv("ROLECALL_CONFIG", str(cfg))
    assert secret(StorageSettings()) == "AccountName=file"
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", "AccountName=azure")
    assert secret(StorageSettings()) == "AccountName=azure"
    monkeypatch.setenv("ROLECALL_CONNECTION_STRING", "AccountName=rolecall")
    assert secret(StorageSettings()) == "AccountName=rolecall"
    assert secret(StorageSettings(connection_string="AccountName=flag")) == "AccountName=flag"


def test_list_setting_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rolecall.worker.config import WorkerSettings

    cfg = tmp_path / "worker.toml"
    cfg.write_text('trusted_keys = ["/file.pub"]\n')
    assert WorkerSettings(config_file=cfg).trusted_keys == [Path("/file.pub")]
    monkeypatch.setenv("ROLECALL_TRUSTED_KEYS", '["/env.pub"]')
    assert WorkerSettings(config_file=cfg).trusted_keys == [Path("/env.pub")]
    flagged = WorkerSettings(config_file=cfg, trusted_keys=[Path("/flag.pub")])
    assert flagged.trusted_keys == [Path("/flag.pub")]


def test_config_file_named_by_its_long_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cfg = tmp_path / "rolecall.yml"
    cfg.write_text("namespace: long\n")
    monkeypatch.setenv("ROLECALL_CONFIG_FILE", str(cfg))
    assert StorageSettings().namespace == "long"


# --- the config file through the library's sources ---------------------------------------

FORMATS = [
    (".json", '{"namespace": "j", "poll-max-s": 5, "trusted_keys": ["/k.pub"]}'),
    (".yaml", "namespace: j\npoll-max-s: 5\ntrusted_keys: [/k.pub]\n"),
    (".yml", "namespace: j\npoll-max-s: 5\ntrusted_keys:\n  - /k.pub\n"),
    (".toml", 'namespace = "j"\npoll-max-s = 5\ntrusted_keys = ["/k.pub"]\n'),
    ("", '{"namespace": "j", "poll_max_s": 5, "trusted_keys": ["/k.pub"]}'),  # no suffix: JSON
]


@pytest.mark.parametrize(("suffix", "text"), FORMATS)
@pytest.mark.parametrize("bom", [False, True], ids=["plain", "bom"])
def test_every_config_format_with_or_without_a_bom(
    tmp_path: Path, suffix: str, text: str, bom: bool
) -> None:
    """PowerShell 5.1's `Out-File -Encoding utf8` starts the file with a byte-order mark."""
    from rolecall.worker.config import WorkerSettings

    cfg = tmp_path / f"worker{suffix}"
    cfg.write_bytes(b"\xef\xbb\xbf" * bom + text.encode())
    s = WorkerSettings(config_file=cfg)
    assert (s.namespace, s.poll_max_s, s.trusted_keys) == ("j", 5, [Path("/k.pub")])


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("c.json", '["namespace", "x"]', "must hold a mapping"),
        ("c.json", '[["namespace", "x"]]', "must hold a mapping"),
        ("c.yaml", "just words\n", "must hold a mapping"),
        ("c.yaml", "namespace: [\n", r"not valid \.yaml: while parsing"),
        ("c.json", "{", r"not valid \.json: Expecting property name"),
        ("c.toml", b"namespace = '\xff'\n", r"not valid \.toml"),
    ],
)
def test_a_bad_config_file_is_one_clear_line(
    tmp_path: Path, name: str, text: str | bytes, says: str
) -> None:
    cfg = tmp_path / name
    cfg.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=says) as raised:
        StorageSettings(config_file=cfg)
    assert str(cfg) in raised.value.message and "\n" not in raised.value.message


def test_a_directory_is_not_a_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        StorageSettings(config_file=tmp_path)


def test_the_issuer_falls_back_when_the_user_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import getpass

    from rolecall.controller.config import default_issuer

    for error in (OSError("no user"), KeyError("getpwuid(): uid not found: 1000750000")):

        def unknown(error: Exception = error) -> str:
            raise error

        monkeypatch.setattr(getpass, "getuser", unknown)
        assert default_issuer() == "rolecall"


def test_names_reads_the_namespace_like_every_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`rolecall names` needs no storage account, but it must agree with the commands that do:
    a namespace from the file ROLECALL_CONFIG names counts."""
    import json

    from typer.testing import CliRunner

    from rolecall.cli import app

    cfg = tmp_path / "rolecall.toml"
    cfg.write_text('namespace = "fromfile"\n')
    monkeypatch.setenv("ROLECALL_CONFIG", str(cfg))
    r = CliRunner().invoke(app, ["names", "web", "-o", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["role_queue"] == "fromfile-role-web"
