"""``rolecall worker --check``: would the agent work on this machine? Asked without working.

Run it when baking an image and on an instance that looks wrong: in seconds, it answers what a
failed boot would answer hours later in a log nobody reads (settings, identity, credential,
storage reach, read access). It never claims, runs, registers, or creates the state directory,
so a VM about to be captured keeps nothing that every future instance would inherit.

Why these calls, and not others:

* the instance and role queues get a Peek. A receive would bump the dequeue count (a job's
  attempts) and hide the message from real workers. Peek needs ``messages/read``, which
  "Storage Queue Data Message Processor" grants; Get Queue Properties would need
  ``queues/read``, which the least-privilege worker roles deliberately do not have. A worker
  SAS bundle may process but not read, so there a refused Peek is a warning.
* its role's results container gets Get Container Properties. A worker may only *create*
  reports there, and no call proves a create right without creating, so a refusal (as opposed
  to an unknown credential) is a warning, not a failure.
* the baseline blob and the payloads container get one HEAD each; for payloads, a HEAD on a
  digest no payload has, which proves read access by answering 404 rather than 403.
* writes (instance record, completions, logs) are not probed: proving a write means writing.

Exit codes: 0 nothing failed (warnings allowed); 2 the configuration or identity is wrong
(``ExitCode.CONFIG``); 3 the credential was refused (``ExitCode.ACCESS_DENIED``); 1 storage
could not be reached, or anything else.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from pathlib import Path
from typing import Any, TextIO, TypeVar

from rolecall.schemas.base import utcnow
from rolecall.schemas.errors import (
    AccessDenied,
    ConfigError,
    NotFound,
    RolecallError,
    StorageUnavailable,
)
from rolecall.schemas.names import Names
from rolecall.schemas.settings import AuthMode
from rolecall.worker.config import WorkerSettings
from rolecall.worker.identity import Identity, resolve_identity
from rolecall.worker.shutdown import ExitCode

T = TypeVar("T")

UNREACHABLE = 1
#: No payload has this digest, so a HEAD on it answers 404 to anyone allowed to read.
ABSENT_DIGEST = "0" * 64
STORAGE_SCOPE = "https://storage.azure.com/.default"
SAS_EXPIRY_WARNING = timedelta(days=7)
WRITES_NOTE = "writes (instance record, completions, logs) are not probed"


class Status(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Finding:
    status: Status
    what: str
    detail: str
    exit_code: int = 0


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    #: why the remaining storage probes are skipped (each would only say the same thing)
    stop: str | None = None

    def ok(self, what: str, detail: str) -> None:
        self.findings.append(Finding(Status.OK, what, detail))

    def warn(self, what: str, detail: str) -> None:
        self.findings.append(Finding(Status.WARN, what, detail))

    def fail(self, what: str, detail: str, exit_code: int) -> None:
        self.findings.append(Finding(Status.FAIL, what, detail, exit_code))

    def skip(self, what: str, detail: str) -> None:
        self.findings.append(Finding(Status.SKIP, what, detail))

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.status is Status.FAIL]

    @property
    def exit_code(self) -> int:
        failures = self.failures
        return failures[0].exit_code if failures else int(ExitCode.OK)

    def render(self, out: TextIO) -> None:
        width = max(len(f.what) for f in self.findings)
        for f in self.findings:
            out.write(f"  {f.status.value:<4}  {f.what:<{width}}  {f.detail}\n")
        warnings = sum(f.status is Status.WARN for f in self.findings)
        if self.failures:
            out.write(f"FAILED: {len(self.failures)} check(s) failed, {warnings} warning(s)\n")
        else:
            out.write(f"OK: nothing failed, {warnings} warning(s); {WRITES_NOTE}\n")


def run_check(
    settings: WorkerSettings, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Check everything the agent needs before its first claim; print the report; return the
    exit code. Never raises for an expected problem: each becomes a line in the report."""
    out, err = out or sys.stdout, err or sys.stderr
    logging.getLogger("azure").setLevel(logging.CRITICAL)  # the report says it, once
    report = Report()
    _settings(settings, report)
    identity = _identity(settings, report)
    _state_dir(settings.state_dir, report)
    _trusted_keys(settings, report)
    if not report.failures:
        _storage(settings, identity, report)
    names = f"namespace {settings.namespace}"
    if identity is not None:
        names += f", role {identity.role}, instance {identity.instance}"
    out.write(f"rolecall worker --check ({names})\n")
    report.render(out)
    out.flush()
    if report.failures:
        first = report.failures[0]
        err.write(f"rolecall worker --check: FAILED: {first.what}: {first.detail}\n")
    return report.exit_code


# --- local checks ------------------------------------------------------------------------


def _settings(settings: WorkerSettings, report: Report) -> None:
    try:
        mode = settings.auth_mode
        if mode is AuthMode.CONNECTION_STRING:
            assert settings.connection_string is not None
            found = re.search(r"AccountName=([^;]+)", settings.connection_string.get_secret_value())
            account = found.group(1) if found else "?"
            how = f"connection string for account {account} (account key: full access)"
        elif mode is AuthMode.IDENTITY:
            _, queue = settings.endpoints()
            client_id = os.environ.get("AZURE_CLIENT_ID")
            who = f"managed identity {client_id}" if client_id else "the VM's managed identity"
            how = f"{who} against {queue}"
        else:
            how = f"SAS bundle {settings.sas_file}"
    except ConfigError as e:
        report.fail("settings", e.message, ExitCode.CONFIG)
        return
    report.ok("settings", f"namespace {settings.namespace}; {how}")


def _identity(settings: WorkerSettings, report: Report) -> Identity | None:
    from_imds = settings.use_imds and (settings.role is None or settings.instance is None)
    try:
        identity = resolve_identity(settings)
    except ConfigError as e:
        report.fail("identity", e.message, ExitCode.CONFIG)
        return None
    source = f"instance metadata at {settings.imds_endpoint}" if from_imds else "flags/settings"
    report.ok("identity", f"role {identity.role}, instance {identity.instance} (from {source})")
    return identity


def _state_dir(root: Path, report: Report) -> None:
    try:
        _inspect_state_dir(root, report)
    except OSError as e:  # e.g. /var/lib/rolecall is 0700 root and the check runs as a user
        report.warn("state dir", f"cannot inspect {root}: {e.strerror}; run the check as root")


def _inspect_state_dir(root: Path, report: Report) -> None:
    """An image must not carry an incarnation: every instance made from it would share it,
    believe its baseline already applied, and skip it."""
    incarnation = root / "incarnation"
    if incarnation.is_file():
        inc = incarnation.read_text(errors="replace").strip()
        report.warn(
            "state dir",
            f"{root} holds incarnation {inc}: fine on a running instance, but delete {root} "
            "before capturing an image, or every instance made from it skips its baseline",
        )
    elif root.exists():
        if os.access(root, os.W_OK | os.X_OK):
            report.ok("state dir", f"{root} exists, no incarnation: first start is a new one")
        else:
            report.fail("state dir", f"{root} is not writable by this user", ExitCode.CONFIG)
    else:
        parent = next((p for p in root.parents if p.exists()), root.anchor)
        if os.access(parent, os.W_OK | os.X_OK):
            report.ok("state dir", f"{root} absent: created at first start (a new incarnation)")
        else:
            who = "root (systemd) or SYSTEM (Windows task)"
            report.warn("state dir", f"{root} absent, {parent} not writable; {who} creates it")


def _trusted_keys(settings: WorkerSettings, report: Report) -> None:
    from rolecall.worker.trust import trust_summary  # the agent's own loader and refusal

    status, detail = trust_summary(settings)
    code = ExitCode.CONFIG if status == Status.FAIL.value else 0
    report.findings.append(Finding(Status(status), "trusted keys", detail, code))


# --- storage -----------------------------------------------------------------------------


def _storage(settings: WorkerSettings, identity: Identity | None, report: Report) -> None:
    from rolecall.storage.clients import Storage

    try:
        storage = Storage(settings)
    except RolecallError as e:
        report.fail("storage client", e.message, ExitCode.CONFIG)
        return
    try:
        _credential(settings, identity, report)
        if report.failures:
            return
        names = storage.names
        if identity is not None:
            for q in (names.instance_queue(identity.instance), names.role_queue(identity.role)):
                probe = functools.partial(_peek, storage, q, settings.auth_mode, report)
                _guarded(report, f"queue {q}", probe)
        if identity is not None:
            results = names.results_container(identity.role)
            probe = functools.partial(_results, storage, settings, report, results)
            _guarded(report, f"container {results}", probe)
            _guarded(report, "baseline", lambda: _baseline(storage, identity.role, report))
        payloads = names.payloads_container
        _guarded(report, f"container {payloads}", lambda: _payloads(storage, report))
    finally:
        storage.close()


def _guarded(report: Report, what: str, probe: Callable[[], None]) -> None:
    """Run one probe; once storage proved unreachable or refused the credential itself, skip
    the rest."""
    if report.stop:
        report.skip(what, f"skipped: {report.stop}")
        return
    try:
        probe()
    except StorageUnavailable as e:
        report.fail(what, f"storage unreachable: {e.message}", UNREACHABLE)
        report.stop = "storage is unreachable"
    except AccessDenied as e:
        report.fail(what, e.message, ExitCode.ACCESS_DENIED)
        if "credentials refused" in e.message or "AuthenticationFailed" in e.message:
            report.stop = "the credential was refused"
    except RolecallError as e:
        report.fail(what, e.message, UNREACHABLE)
    except Exception as e:  # a diagnostic tool reports, it does not crash
        report.fail(what, f"unexpected {type(e).__name__}: {e}", UNREACHABLE)


def _once(what: str, fn: Callable[[], T]) -> T:
    """One storage call with a single quick retry: the agent's own policy (minutes of
    patience) would make a dead endpoint look like a hung check."""
    from rolecall.storage.retry import QUICK

    return QUICK.call(what, fn)


def _credential(settings: WorkerSettings, identity: Identity | None, report: Report) -> None:
    mode = settings.auth_mode
    if mode is AuthMode.IDENTITY:
        from rolecall.storage.transport import identity_credential

        try:
            token: Any = identity_credential().get_token(STORAGE_SCOPE)
        except Exception as e:  # azure.identity raises several unrelated types
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            report.fail("credential", f"no storage token: {first}", ExitCode.ACCESS_DENIED)
            return
        left = int(token.expires_on - utcnow().timestamp())
        if left <= 0:
            report.fail("credential", "the storage token issued is already expired (is the "
                        "clock right?)", ExitCode.ACCESS_DENIED)  # fmt: skip
        else:
            report.ok("credential", f"storage token issued (valid for {left // 60} min)")
    elif mode is AuthMode.SAS:
        _sas_bundle(settings, identity, report)
    else:
        report.ok("credential", "account key (checked by the requests below)")


def _sas_bundle(settings: WorkerSettings, identity: Identity | None, report: Report) -> None:
    from rolecall.schemas.access import SasBundle
    from rolecall.schemas.codec import decode_document

    assert settings.sas_file is not None
    bundle = decode_document(settings.sas_file.read_bytes(), SasBundle)
    left = bundle.expires_at - utcnow()
    if left <= timedelta(0):
        expired = f"SAS bundle expired {bundle.expires_at:%Y-%m-%d %H:%M}Z"
        report.fail("credential", expired, ExitCode.ACCESS_DENIED)
        return
    issued_to = f"{bundle.role}/{bundle.instance}"
    me = f"{identity.role}/{identity.instance}" if identity else None
    if me and issued_to != me:
        report.fail("credential", f"SAS bundle is for {issued_to}, not {me}", ExitCode.CONFIG)
        return
    if left < SAS_EXPIRY_WARNING:
        report.warn("credential", f"SAS bundle expires in {left.days} day(s); reissue it")
    else:
        report.ok("credential", f"SAS bundle valid until {bundle.expires_at:%Y-%m-%d}")


def _missing(kind: str) -> str:
    return f"{kind} does not exist yet: the agent creates it if allowed, else deploy/azure does"


def _peek(storage: Any, queue: str, mode: AuthMode, report: Report) -> None:
    what = f"queue {queue}"
    try:
        msgs = _once(f"peek {queue}", lambda: storage.queue(queue).peek_messages(max_messages=32))
    except NotFound:
        report.warn(what, _missing("queue"))
        return
    except AccessDenied as e:
        if mode is AuthMode.SAS and "AuthorizationPermissionMismatch" in e.message:
            # `rolecall sas worker` grants process and update, not read: claiming is all it may
            report.warn(what, "reachable; the SAS bundle may claim here but not peek, and a "
                        "claim cannot be proven without claiming")  # fmt: skip
            return
        if mode is AuthMode.IDENTITY and "AuthorizationPermissionMismatch" in e.message:
            hint = "; the worker identity needs Storage Queue Data Message Processor here"
            raise AccessDenied(e.message + hint) from e
        raise
    waiting = f"{len(msgs)}+" if len(msgs) >= 32 else str(len(msgs))
    report.ok(what, f"readable: {waiting} message(s) waiting (peeked, none claimed)")


def _results(storage: Any, settings: WorkerSettings, report: Report, container: str) -> None:
    what = f"container {container}"
    try:
        _once(f"properties of {container}", storage.container(container).get_container_properties)
    except NotFound:
        report.warn(what, _missing("container"))
        return
    except AccessDenied as e:
        unknown = "AuthenticationFailed" in e.message or "credentials refused" in e.message
        if settings.auth_mode is AuthMode.CONNECTION_STRING or unknown:
            raise
        report.warn(
            what,
            "reachable; this credential may only create reports here (as least privilege "
            "intends), and a create cannot be proven without writing one",
        )
        return
    report.ok(what, "reachable")


def _baseline(storage: Any, role: str, report: Report) -> None:
    container, path = storage.names.state_container, Names.baseline_blob(role)
    try:
        props = _once(f"stat {container}/{path}", storage.blob(container, path).get_blob_properties)
    except NotFound as e:
        if "ContainerNotFound" in e.message:
            report.warn("baseline", _missing(f"container {container}"))
        else:
            report.ok("baseline", f"none published for role {role} yet ({container}/{path})")
        return
    report.ok("baseline", f"{container}/{path} readable ({int(props.size)} bytes)")


def _payloads(storage: Any, report: Report) -> None:
    container = storage.names.payloads_container
    what = f"container {container}"
    probe = Names.payload_blob(ABSENT_DIGEST)
    try:
        _once(f"stat {container}/{probe}", storage.blob(container, probe).get_blob_properties)
    except NotFound as e:
        if "ContainerNotFound" in e.message:
            report.warn(what, _missing("container"))
            return
    report.ok(what, "readable")
