"""Prepare and run one payload: shared by queued jobs and baseline steps.

Fetch (verified) from the cache, extract archives safely into a fresh work directory, pick
the interpreter, run in a process group with the job's timeout, upload the full log only when
the completion's tails cannot hold it, and clean up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolecall.logs import SECRETS
from rolecall.schemas.base import TAIL_CHARS
from rolecall.schemas.baseline import RebootPolicy
from rolecall.schemas.errors import ConcurrencyConflict, ExecutionError, StorageError
from rolecall.schemas.events import Outcome
from rolecall.schemas.jobs import Execution, PayloadKind, PayloadRef
from rolecall.schemas.names import Names
from rolecall.schemas.redact import redact
from rolecall.storage.clients import Storage
from rolecall.worker import executor
from rolecall.worker.archive import extract, safe_member_path
from rolecall.worker.config import WorkerSettings
from rolecall.worker.identity import Identity
from rolecall.worker.output import JobOutput
from rolecall.worker.payloads import PayloadCache
from rolecall.worker.state import LocalState


@dataclass(frozen=True)
class Ran:
    """What running a payload produced, secrets already masked."""

    result: executor.ExecResult
    log_blob: str | None
    stdout_tail: str
    stderr_tail: str

    def outcome(self, reboot: RebootPolicy = RebootPolicy.IF_REQUIRED) -> Outcome:
        """Exit 3010/194 means done-but-reboot, unless the step says reboots never matter."""
        r = self.result
        if r.timed_out:
            return Outcome.TIMED_OUT
        if r.exit_code in executor.REBOOT_EXIT_CODES:
            if reboot is RebootPolicy.IF_REQUIRED:
                return Outcome.REBOOT_REQUIRED
            return Outcome.SUCCEEDED
        return Outcome.SUCCEEDED if r.exit_code == 0 else Outcome.FAILED

    def completion_fields(self) -> dict[str, Any]:
        r = self.result
        return {
            "exit_code": r.exit_code,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "duration_s": r.duration_s,
            "stdout_tail": self.stdout_tail,
            "stderr_tail": self.stderr_tail,
            "log_blob": self.log_blob,
        }


@dataclass(frozen=True)
class Work:
    """One thing to run, whether it came from a queue or from the baseline."""

    run_id: str
    job_id: str
    attempt: int
    payload: PayloadRef
    execution: Execution
    timeout_s: float


class Runner:
    def __init__(
        self,
        settings: WorkerSettings,
        storage: Storage,
        identity: Identity,
        state: LocalState,
        cache: PayloadCache,
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.identity = identity
        self.state = state
        self.cache = cache
        self.base_env = executor.base_environment()
        # whatever a killed agent left mid-job (an archive's files, a script's leftovers)
        _empty(state.work_dir)
        self.output = JobOutput(state.work_dir)
        self.scratch = state.work_dir / "scratch"
        self.scratch.mkdir(mode=0o700)

    def run(self, work: Work, watch: executor.Watch) -> Ran:
        """Run ``work``. Raises PayloadError / ExecutionError for work that cannot start.

        Every filesystem operation counts at hundreds of jobs a second, so there are as few
        as the job allows: scripts run straight from the verified cache (no copy), in one
        scratch directory emptied only when a job left something in it, with output files
        reused from job to job (see worker/output.py). Archives get a fresh directory.
        """
        secrets = work.execution.secret_values()
        SECRETS.add(*secrets)
        cached = self.cache.fetch(work.payload)
        archive = work.payload.kind is PayloadKind.ARCHIVE
        with self._workdir(work, archive) as cwd:
            target = self._unpack(work, cached, cwd) if archive else cached
            interpreter = executor.choose_interpreter(
                work.payload.filename if not archive else target.name, work.execution.interpreter
            )
            command = executor.build_command(target, interpreter, list(work.execution.args))
            stdout, stderr = self.output.open()
            result = executor.run(
                command, cwd=cwd, stdout=stdout, stderr=stderr, env=self._environment(work),
                timeout_s=work.timeout_s, watch=watch,
            )  # fmt: skip
            try:
                log_blob = self._upload_log(work, result, secrets)
                out_tail, err_tail = self.output.tails()
            finally:
                self.output.finished(reusable=not result.lingering)
        return Ran(
            result=result,
            log_blob=log_blob,
            stdout_tail=redact(out_tail, secrets),
            stderr_tail=redact(err_tail, secrets),
        )

    def _environment(self, work: Work) -> dict[str, str]:
        env = dict(self.base_env)
        env.update({v.name: v.value for v in work.execution.env})
        env.update(
            ROLECALL_JOB_ID=work.job_id,
            ROLECALL_RUN_ID=work.run_id,
            ROLECALL_ROLE=self.identity.role,
            ROLECALL_INSTANCE=self.identity.instance,
            ROLECALL_INCARNATION=self.state.incarnation,
            ROLECALL_ATTEMPT=str(work.attempt),
        )
        return env

    @contextlib.contextmanager
    def _workdir(self, work: Work, archive: bool) -> Iterator[Path]:
        """An empty working directory for the job: the shared scratch directory for a
        script, a fresh one (removed afterwards) for an archive's files."""
        if not archive:
            _empty(self.scratch)
            yield self.scratch
            return
        key = hashlib.sha256(f"{work.job_id}/{work.attempt}".encode()).hexdigest()[:24]
        workdir = self.state.work_dir / key
        shutil.rmtree(workdir, ignore_errors=True)  # left by a crash: start clean
        workdir.mkdir(mode=0o700)
        try:
            yield workdir
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _unpack(self, work: Work, archive: Path, root: Path) -> Path:
        extract(
            archive,
            root,
            max_bytes=self.settings.extract_max_bytes,
            max_members=self.settings.extract_max_members,
        )
        if not work.execution.entrypoint:
            raise ExecutionError("an archive payload needs an entrypoint")
        target = safe_member_path(root, work.execution.entrypoint)
        if not target.is_file():
            raise ExecutionError(f"entrypoint {work.execution.entrypoint!r} is not in the archive")
        return target

    def _upload_log(
        self, work: Work, result: executor.ExecResult, secrets: list[str]
    ) -> str | None:
        """Upload the full log only if the tails lost something: one transaction saved per
        typical job. Create-only, so a re-run never overwrites the first attempt's log."""
        if self.output.size <= TAIL_CHARS and result.exit_code == 0:
            return None
        path = Names.log_blob(work.run_id, work.job_id, self.identity.instance, work.attempt)
        data = redact(self.output.full_log().decode("utf-8", "replace"), secrets).encode()
        container = self.storage.names.logs_container
        try:
            self.storage.put_blob(
                container, path, data, create_only=True, content_type="text/plain; charset=utf-8"
            )
        except ConcurrencyConflict:
            pass  # this attempt's log is already there (a replay after a crash)
        except StorageError:
            return None  # the tails are in the completion; a missing full log is not fatal
        return Names.blob_address(container, path)


def _empty(directory: Path) -> None:
    """Empty ``directory`` (one scandir when it already is, the usual case)."""
    with os.scandir(directory) as entries:
        leftovers = [e.path for e in entries]
    for path in leftovers:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
