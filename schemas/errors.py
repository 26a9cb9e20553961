"""The one error hierarchy shared by worker, controller and CLI.

Every error carries a short machine-readable ``reason`` (it lands in poison records and
completions, so operators can group failures) and a human message. Expected failures are
subclasses of :class:`RolecallError`; the CLI prints them without a traceback.
"""

from __future__ import annotations


class RolecallError(Exception):
    """Base of every error rolecall raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.reason


# --- the wire contract -------------------------------------------------------------------


class ContractError(RolecallError):
    """A message or document does not follow the contract in ``schemas/``.

    The worker poisons a message that raises this: retrying cannot make it valid.
    """

    reason = "malformed"


class MessageTooLarge(ContractError):
    reason = "too_large"


class UnknownSchemaVersion(ContractError):
    """Another major version of the contract: nothing in it can be trusted to mean the same."""

    reason = "unknown_schema_version"


class RequiresNewerAgent(ContractError):
    """A newer minor whose fields this reader must not ignore (schemas/version.py): refused,
    not run half-understood. Upgrading the agent fixes it; retrying does not."""

    reason = "requires_newer_agent"


class InvalidName(ContractError):
    reason = "invalid_name"


# --- configuration -----------------------------------------------------------------------


class ConfigError(RolecallError):
    """Settings are missing or contradict each other."""

    reason = "config"


# --- storage -----------------------------------------------------------------------------


class StorageError(RolecallError):
    """Azure Storage refused or failed a request after retries."""

    reason = "storage"


class StorageUnavailable(StorageError):
    """Transient failure (timeout, 5xx, reset) that outlived its retries."""

    reason = "storage_unavailable"


class AccessDenied(StorageError):
    """Credentials were refused (bad key, expired SAS, missing permission)."""

    reason = "access_denied"


class NotFound(StorageError):
    reason = "not_found"


class ConcurrencyConflict(StorageError):
    """An ETag-guarded write lost the race; re-read and try again."""

    reason = "conflict"


class LeaseLost(StorageError):
    """The pop receipt is stale: another consumer may own the message now.

    Azure returns 400 PopReceiptMismatch or 404 MessageNotFound. After this, never report
    success for the claim: the message may be running elsewhere.
    """

    reason = "lease_lost"


# --- payloads and execution ---------------------------------------------------------------


class PayloadError(RolecallError):
    reason = "payload"


class PayloadMissing(PayloadError):
    reason = "payload_missing"


class PayloadTampered(PayloadError):
    """The bytes do not match the digest or size the job promised."""

    reason = "payload_tampered"


class PayloadTooLarge(PayloadError):
    reason = "payload_too_large"


class HostileArchive(PayloadError):
    """An archive member would escape the extraction root or exceed the size cap."""

    reason = "hostile_archive"


class ExecutionError(RolecallError):
    """The job could not be started (no such interpreter, bad entrypoint)."""

    reason = "cannot_execute"


class AgentUpgradeFailed(RolecallError):
    """The baseline's agent version could not be installed beside this one, or failed its
    check, or was rolled back: this agent keeps running and applies the rest."""

    reason = "agent_upgrade_failed"


# --- trust --------------------------------------------------------------------------------


class SignatureError(RolecallError):
    """A job or baseline is unsigned, forged, altered or addressed elsewhere."""

    reason = "bad_signature"


class Replayed(SignatureError):
    """A job arrived in a message other than the one it was sent in: an old job sent again,
    or a message whose content was replaced (``worker/binding.py``)."""

    reason = "replayed"


# --- operators' side ----------------------------------------------------------------------


class UnknownRun(RolecallError):
    reason = "unknown_run"


class UnknownRole(RolecallError):
    reason = "unknown_role"


class UnknownInstance(RolecallError):
    """An instance named by hand that never registered: usually a typo."""

    reason = "unknown_instance"


# --- the agent's own instance name --------------------------------------------------------


class InstanceInUse(RolecallError):
    """Another running agent holds this instance name (worker/registration.py). Two agents
    under one name would overwrite each other's record and split its work: the second one
    refuses to run, and one that finds itself replaced stops."""

    reason = "instance_in_use"
