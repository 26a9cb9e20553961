"""Nothing done to the local disk before or after a job stands in for the job's result.

Windows refuses to delete a file a process still holds (WinError 32), and a job may leave
such a process behind. These tests make the removal fail as Windows would (the refusal is
simulated; the runner, the storage and the jobs are real) and check what a user sees: the
next job runs and reports, an archive's result is returned before its files go, and what
could not be removed goes at a later sweep.
"""

from __future__ import annotations

import io
import pathlib
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from rolecall.controller.payloads import publish_bytes
from rolecall.schemas.jobs import Execution, PayloadKind
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from rolecall.worker import runner as runner_module
from rolecall.worker.config import WorkerSettings
from rolecall.worker.executor import Unwatched
from rolecall.worker.identity import Identity
from rolecall.worker.payloads import PayloadCache
from rolecall.worker.runner import Runner, Work
from rolecall.worker.state import LocalState

SHARING_VIOLATION = PermissionError(
    13, "The process cannot access the file because it is being used by another process"
)


@pytest.fixture
def runner(storage: Storage, settings: StorageSettings, tmp_path: Path) -> Runner:
    worker_settings = WorkerSettings(
        connection_string=settings.connection_string, namespace=settings.namespace
    )
    state = LocalState(tmp_path / "state").open()
    cache = PayloadCache(storage, state.cache_dir, worker_settings.payload_max_bytes)
    return Runner(worker_settings, storage, Identity("web", "web-0"), state, cache)


def work(storage: Storage, job_id: str, data: bytes, filename: str = "job.sh", **kw: Any) -> Work:
    kind = PayloadKind.ARCHIVE if filename.endswith(".tar.gz") else PayloadKind.SCRIPT
    payload = publish_bytes(storage, data, filename, kind)
    return Work("run1", job_id, 1, payload, Execution(**kw), 30.0)


def refuse_removal_of(
    monkeypatch: pytest.MonkeyPatch, name: str, refusing: dict[str, bool]
) -> None:
    """While ``refusing['on']``, removing anything named ``name`` fails as on Windows."""
    unlink, rmtree = pathlib.Path.unlink, shutil.rmtree

    def guarded_unlink(self: Path, missing_ok: bool = False) -> None:
        if refusing["on"] and self.name == name:
            raise SHARING_VIOLATION
        unlink(self, missing_ok=missing_ok)

    def guarded_rmtree(path: Any, *args: Any, **kw: Any) -> None:
        if refusing["on"] and Path(path).name == name:
            raise SHARING_VIOLATION
        rmtree(path, *args, **kw)

    monkeypatch.setattr(pathlib.Path, "unlink", guarded_unlink)
    monkeypatch.setattr(runner_module.shutil, "rmtree", guarded_rmtree)


def test_a_file_a_job_left_held_does_not_stop_the_next_job(
    runner: Runner, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = {"on": True}
    refuse_removal_of(monkeypatch, "held.txt", refusing)
    first = runner.run(work(storage, "j1", b"echo busy > held.txt\npwd\n"), Unwatched())
    second = runner.run(work(storage, "j2", b"ls -A\npwd\n"), Unwatched())
    assert first.result.exit_code == second.result.exit_code == 0
    first_dir, second_dir = first.stdout_tail.strip(), second.stdout_tail.strip().split("\n")[-1]
    assert second_dir != first_dir, "the held scratch directory was set aside"
    assert second.stdout_tail.strip() == second_dir, "the job got an empty directory"
    assert Path(first_dir).exists()
    refusing["on"] = False
    runner.sweep()
    assert not Path(first_dir).exists(), "swept once nothing held it"


def test_an_archive_result_is_returned_before_its_files_go(
    runner: Runner, storage: Storage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        script = b"pwd\nexit 3\n"
        info = tarfile.TarInfo("run.sh")
        info.size = len(script)
        tf.addfile(info, io.BytesIO(script))
    ran = runner.run(
        work(storage, "j3", buf.getvalue(), "a.tar.gz", entrypoint="run.sh"), Unwatched()
    )
    workdir = Path(ran.stdout_tail.strip())
    assert ran.result.exit_code == 3 and workdir.is_dir(), "files kept until after the report"
    refusing = {"on": True}
    refuse_removal_of(monkeypatch, workdir.name, refusing)
    runner.sweep()  # a process still holds it: no error, kept for later
    assert workdir.is_dir()
    refusing["on"] = False
    runner.sweep()
    assert not workdir.exists()
