"""Small parts on their own: back-off, identity from metadata, the dev Azurite command,
interpreter choice (Windows: tests/test_windows.py), --once."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from rolecall.devtools.localfleet import rolecall_command
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.jobs import Interpreter
from rolecall.storage.backoff import IdleBackoff
from rolecall.worker.commands import build_command, choose_kind
from rolecall.worker.config import WorkerSettings
from rolecall.worker.identity import resolve_identity
from tests.fleet import Fleet, Ledger, Operator, wait_for
from tests.imds import FakeMetadata


def test_idle_backoff_doubles_to_its_ceiling_and_resets_on_work() -> None:
    b = IdleBackoff(0.1, 1.0, jitter=0)
    assert [round(b.idle(), 2) for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    b.busy()
    assert b.idle() == pytest.approx(0.1)


def test_identity_comes_from_flags_first_then_instance_metadata() -> None:
    meta = FakeMetadata(vm_name="vmss_000003", role_tag="web")
    try:
        s = WorkerSettings(use_imds=True, imds_endpoint=meta.url, connection_string="x")
        assert resolve_identity(s) == resolve_identity(s)
        ident = resolve_identity(s)
        assert (ident.role, ident.instance) == ("web", "vmss_000003")
        flagged = WorkerSettings(role="db", use_imds=True, imds_endpoint=meta.url)
        assert resolve_identity(flagged).role == "db"
        meta.role_tag = None
        with pytest.raises(ConfigError, match="rolecall-role"):
            resolve_identity(WorkerSettings(use_imds=True, imds_endpoint=meta.url))
    finally:
        meta.close()
    with pytest.raises(ConfigError, match="did not answer"):
        resolve_identity(WorkerSettings(use_imds=True, imds_endpoint="http://127.0.0.1:9"))


@pytest.mark.parametrize(
    "filename,platform,expected",
    [
        ("setup.sh", "linux", ["sh"]),
        ("setup.ps1", "linux", ["pwsh", "-NoProfile"]),
        ("setup.py", "linux", [None]),
    ],
)
def test_interpreter_by_extension_and_platform(
    filename: str, platform: str, expected: list[str | None], tmp_path: Path
) -> None:
    script = tmp_path / filename
    script.write_text("x")
    kind = choose_kind(filename, Interpreter.AUTO, platform)
    cmd = build_command(script, kind, ["a"], platform).argv
    if expected == [None]:
        assert cmd[1:] == [str(script), "a"]  # the agent's own Python
    else:
        assert cmd[: len(expected)] == expected and cmd[-2:] == [str(script), "a"]


def test_dev_azurite_prints_a_connection_string_that_works_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [*rolecall_command(), "dev", "azurite", "--blob-port", "0", "--queue-port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = ""
        while "AZURE_STORAGE_CONNECTION_STRING" not in line:
            line = proc.stdout.readline()
            assert line, "exited before printing the connection string"
        cs = line.split("'")[1]
        from rolecall.schemas.settings import StorageSettings
        from rolecall.storage.clients import Storage

        s = Storage(StorageSettings(connection_string=cs, namespace="dev"))
        s.ensure_queue("dev-events")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def test_once_applies_the_baseline_drains_the_queues_and_exits(
    ops: Operator, ledger: Ledger, workers: Fleet
) -> None:
    """Two batches (a batch is 32): the first one's deletes overlap the second one's jobs,
    and exit waits for all of them, so no message comes back after the worker is gone."""
    ids = [f"j{i:02d}" for i in range(35)]
    script = ops.publish(ledger.script("j"))
    for job_id in ids:
        ops.enqueue(ops.job("web", script, job_id=job_id))
    w = workers.worker("web", "web-0", "--once")
    assert w.wait(60) == 0
    assert len(ledger.lines()) == 35
    assert ops.storage.approximate_count(ops.names.role_queue("web")) == 0, "all deleted"
    wait_for(lambda: len(ops.completions()) == 35, what="35 completions")
