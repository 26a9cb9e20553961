"""Prepare and run one payload: shared by queued jobs and baseline steps.

Fetch (verified) from the cache, extract archives safely into a fresh work directory, pick
the program (worker/commands.py), run it in a process group (a Job Object on Windows) with
the job's timeout, upload the full log only when the completion's tails cannot hold it.

Nothing done to the local disk before or after the job may stand in for the job's result.
Windows refuses to delete a file some process still holds (WinError 32), and a job may leave
such a process behind; a path can be too long to extract. So: an archive that cannot be
extracted is the payload's fault (``ExecutionError``, refused with its reason); a work
directory or output file that cannot be prepared is this machine's (``LocalFault``: the
attempt fails and the policy retries it); and cleaning up never raises. An archive's files
are removed only by ``sweep()``, which the agent calls after the job's marker and completion
are written, and which also runs before the next job and at start, for what an earlier
sweep could not remove.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from secrets import token_hex
from typing import Any, BinaryIO

from rolecall.logs import SECRETS
from rolecall.schemas.base import TAIL_CHARS
from rolecall.schemas.baseline import RebootPolicy
from rolecall.schemas.errors import ConcurrencyConflict, ExecutionError, StorageError
from rolecall.schemas.events import Outcome
from rolecall.schemas.jobs import Execution, Interpreter, PayloadKind, PayloadRef
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from rolecall.storage.streams import upload_file
from rolecall.worker import executor
from rolecall.worker.archive import extract, safe_member_path
from rolecall.worker.commands import (
    ExitMeaning,
    Kind,
    build_command,
    choose_kind,
    exit_meaning,
    this_machine_programs,
)
from rolecall.worker.config import WorkerSettings
from rolecall.worker.decoding import windows_fallback_encoding
from rolecall.worker.environment import JobEnvironment
from rolecall.worker.identity import Identity
from rolecall.worker.joblog import StreamLog
from rolecall.worker.output import JobOutput
from rolecall.worker.payloads import PayloadCache
from rolecall.worker.sealing import Unsealer
from rolecall.worker.state import LocalState

log = logging.getLogger(__name__)


class LocalFault(ExecutionError):
    """This machine could not prepare the job (a work directory or output file): not the
    job's fault, so the attempt counts as failed and is retried."""

    reason = "local_error"


@dataclass(frozen=True)
class Ran:
    """What running a payload produced, secrets already masked."""

    result: executor.ExecResult
    log_blob: str | None
    stdout_tail: str
    stderr_tail: str
    kind: Kind = Interpreter.EXEC
    #: bytes of output left out of the log between its head and its tail
    log_cut_bytes: int = 0

    @property
    def meaning(self) -> ExitMeaning:
        return exit_meaning(self.result.exit_code, self.kind)

    @property
    def reboot_started(self) -> bool:
        """Exit 1641: the installer has started the reboot itself."""
        return self.meaning is ExitMeaning.REBOOT_STARTED

    def outcome(self, reboot: RebootPolicy = RebootPolicy.IF_REQUIRED) -> Outcome:
        """Exit 3010/194 (1641: already rebooting) means done-but-reboot, unless the step
        says reboots never matter."""
        if self.result.timed_out:
            return Outcome.TIMED_OUT
        meaning = self.meaning
        if meaning in (ExitMeaning.REBOOT_REQUIRED, ExitMeaning.REBOOT_STARTED):
            if reboot is RebootPolicy.IF_REQUIRED:
                return Outcome.REBOOT_REQUIRED
            return Outcome.SUCCEEDED
        return Outcome.SUCCEEDED if meaning is ExitMeaning.SUCCEEDED else Outcome.FAILED

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
            "log_cut_bytes": self.log_cut_bytes or None,
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
    #: the full log's name given a random token (a job's log by default), and whether it is
    #: kept even when the tails hold it all (baseline steps: `rolecall logs` shows every
    #: step's output, and a step's retry gets its own)
    log_name: Callable[[str], str] | None = None
    keep_log: bool = False


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
        self.environment = JobEnvironment()
        self.unsealer = Unsealer.load(settings.sealing_key)
        self.programs = this_machine_programs()
        #: what a killed agent left mid-job (an archive's files, a script's leftovers)
        self._leftovers: list[Path] = [Path(e.path) for e in os.scandir(state.work_dir)]
        self.sweep()
        self.output = JobOutput(state.work_dir, windows_fallback_encoding())
        self.scratch = state.work_dir / "scratch"
        self._scratches = 0
        self.scratch.mkdir(mode=0o700, exist_ok=True)

    def run(self, work: Work, watch: executor.Watch) -> Ran:
        """Run ``work``. Raises PayloadError / ExecutionError for work that cannot start,
        LocalFault when this machine cannot prepare it.

        Every filesystem operation counts at hundreds of jobs a second, so there are as few
        as the job allows: scripts run straight from the verified cache (no copy), in one
        scratch directory emptied only when a job left something in it, with output files
        reused from job to job (see worker/output.py). Archives get a fresh directory.
        """
        secrets = work.execution.secret_values()
        SECRETS.add(*secrets)
        cached = self.cache.fetch(work.payload)
        if self._leftovers:
            self.sweep()
        archive = work.payload.kind is PayloadKind.ARCHIVE
        cwd = self._prepare(work, archive)
        target = self._unpack(work, cached, cwd) if archive else cached
        kind = choose_kind(
            work.payload.filename if not archive else target.name, work.execution.interpreter
        )
        command = build_command(target, kind, list(work.execution.args), programs=self.programs)
        if kind is Interpreter.EXEC and os.name == "posix":
            target.chmod(target.stat().st_mode | 0o100)
        stdout, stderr = self._output_files()
        env = self._environment(work, command.env)
        result = executor.run(
            command, cwd=cwd, stdout=stdout, stderr=stderr, env=env,
            timeout_s=work.timeout_s, watch=watch,
        )  # fmt: skip
        try:
            out, err, log_blob = self._collect(work, result, secrets)
        finally:
            self.output.finished(reusable=not result.lingering)
        return Ran(
            result=result,
            log_blob=log_blob,
            stdout_tail=out.tail,
            stderr_tail=err.tail,
            kind=kind,
            log_cut_bytes=out.cut_bytes + err.cut_bytes,
        )

    def sweep(self) -> None:
        """Remove what finished jobs left (archive directories, stale scratch directories);
        what cannot be removed yet (a process still holds it) waits for the next sweep."""
        left = []
        for path in self._leftovers:
            if not _remove(path):
                left.append(path)
        self._leftovers = left

    def _environment(self, work: Work, kind_env: dict[str, str]) -> dict[str, str]:
        env = self.environment.current()
        env.update({v.name: v.value for v in work.execution.env})
        env.update(kind_env)
        env.update(
            ROLECALL_JOB_ID=work.job_id,
            ROLECALL_RUN_ID=work.run_id,
            ROLECALL_ROLE=self.identity.role,
            ROLECALL_INSTANCE=self.identity.instance,
            ROLECALL_INCARNATION=self.state.incarnation,
            ROLECALL_ATTEMPT=str(work.attempt),
        )
        return env

    def _prepare(self, work: Work, archive: bool) -> Path:
        """An empty working directory for the job: the shared scratch directory for a
        script (a fresh one if the old cannot be emptied), a new one for an archive."""
        try:
            if not archive:
                if not _empty(self.scratch):
                    self._leftovers.append(self.scratch)
                    self._scratches += 1
                    self.scratch = self.state.work_dir / f"scratch.{self._scratches}"
                    self.scratch.mkdir(mode=0o700, exist_ok=True)
                    _empty(self.scratch)
                return self.scratch
            key = hashlib.sha256(f"{work.job_id}/{work.attempt}".encode()).hexdigest()[:24]
            workdir = self.state.work_dir / key
            _remove(workdir)  # left by a crash: start clean
            workdir.mkdir(mode=0o700)
            self._leftovers.append(workdir)
            return workdir
        except OSError as e:
            raise LocalFault(f"cannot prepare the job's working directory: {e}") from e

    def _output_files(self) -> tuple[BinaryIO, BinaryIO]:
        try:
            return self.output.open()
        except OSError as e:
            self.output.close()
            raise LocalFault(f"cannot prepare the job's output files: {e}") from e

    def _collect(
        self, work: Work, result: executor.ExecResult, secrets: list[str]
    ) -> tuple[StreamLog, StreamLog, str | None]:
        """The output's tails, and its log uploaded only if the tails lost something (one
        transaction saved per typical job). Memory stays bounded (worker/joblog.py)."""
        try:
            if not work.keep_log and self.output.size <= TAIL_CHARS and result.exit_code == 0:
                out, err = self.output.read(secrets)
                return out, err, None
            with self.output.spool() as spool:
                out, err = self.output.read(secrets, spool=spool)
                return out, err, self._upload_log(work, spool)
        except OSError as e:
            log.warning("cannot read the job's output: %s", e)
            return StreamLog("", 0), StreamLog(f"(output unreadable: {e})", 0), None

    def _unpack(self, work: Work, archive: Path, root: Path) -> Path:
        try:
            extract(
                archive,
                root,
                max_bytes=self.settings.extract_max_bytes,
                max_members=self.settings.extract_max_members,
            )
        except OSError as e:
            raise ExecutionError(f"cannot extract the archive here: {e}") from e
        if not work.execution.entrypoint:
            raise ExecutionError("an archive payload needs an entrypoint")
        target = safe_member_path(root, work.execution.entrypoint)
        if not target.is_file():
            raise ExecutionError(f"entrypoint {work.execution.entrypoint!r} is not in the archive")
        return target

    def _upload_log(self, work: Work, spool: BinaryIO) -> str | None:
        """Upload the spooled log in blocks, so memory holds one block (storage/streams.py).

        Under a name with a random part, reported in the signed completion, and create-only:
        another instance can neither guess the name nor replace the blob, and a blob already
        there (planted, or a one-in-2^128 clash) only sends the log to another name.
        """
        container = self.storage.names.logs_container
        for _ in range(_LOG_NAME_TRIES):
            token = token_hex(16)
            path = work.log_name(token) if work.log_name else Names.log_blob(
                work.run_id, work.job_id, self.identity.instance, work.attempt, token
            )  # fmt: skip
            try:
                upload_file(self.storage, container, path, spool, create_only=True,
                            content_type="text/plain; charset=utf-8")  # fmt: skip
            except ConcurrencyConflict:
                log.warning("log blob %s already exists; trying another name", path)
                continue
            except StorageError:
                return None  # the tails are in the completion; a missing full log is not fatal
            return Names.blob_address(container, path)
        return None


#: names tried for one log before giving up on it (a clash is a sign of tampering)
_LOG_NAME_TRIES = 3


def _empty(directory: Path) -> bool:
    """Empty ``directory`` (one scandir when it already is, the usual case); False if
    something in it could not be removed."""
    with os.scandir(directory) as entries:
        leftovers = [e.path for e in entries]
    return all([_remove(Path(p)) for p in leftovers])


def _remove(path: Path) -> bool:
    """Remove a file or a directory tree; False (logged) if some of it is still there."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except FileNotFoundError:
        return True
    except OSError as e:
        log.warning("cannot remove %s yet: %s", path, e)
        return False
    return True
