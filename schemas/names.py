"""Every queue, container and blob path, derived in one place.

Azure queue and container names allow 3-63 characters of lowercase letters, digits and
single hyphens, starting and ending with a letter or digit. Role and instance names in the
wild look like ``WebRole_IN_0`` or ``vmss_000002``. :func:`name_key` maps any such name to a
legal token, and the mapping is injective: a name that is already a clean token maps to
itself; any other name (or one too long, or one that merely *looks* hashed) is sanitised and
given a ``-h<10 hex>`` tail taken from the SHA-256 of the original. Clean tokens never end in
such a tail, so the two branches cannot collide; two hashed tokens collide only if 40 bits of
SHA-256 do. No key ends in ``-poison`` either, so no queue name is another's poison queue.

Controller, worker, deploy templates (``rolecall names``) and tests all call this module;
nothing else spells a storage name.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from rolecall.schemas.errors import InvalidName

#: The random part of a log blob's name (``secrets.token_hex(16)``).
_LOG_TOKEN = re.compile(r"[0-9a-f]{32}")
_LOG_FILE = re.compile(r"[0-9a-f]{32}\.log")

#: Longest key a role or instance may map to. With a namespace of at most
#: ``MAX_NAMESPACE`` characters, ``<ns>-role-<key>-poison`` stays within 63.
MAX_KEY = 36
MAX_NAMESPACE = 12
DEFAULT_NAMESPACE = "rc"
POISON_SUFFIX = "-poison"

#: What a run or job id may look like wherever it reaches a storage path: what rolecall makes
#: (``r20261127-101500-1a2b3c``, ``baseline-web-v3``, ``<run>.<target key>``) and nothing that
#: could climb out of its folder (no slash, no ``..``, no leading dot).
ID_PATTERN = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
PLAIN_ID = re.compile(ID_PATTERN)

_CLEAN = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
#: An agent version names a blob and, on instances, a directory: digits first, then what
#: PEP 440 versions use, ending in a letter or digit (Windows drops a trailing dot).
AGENT_VERSION_PATTERN = r"^[0-9](?:[0-9A-Za-z.+!_-]{0,62}[0-9A-Za-z])?$"
_AGENT_VERSION = re.compile(AGENT_VERSION_PATTERN)
_HASHED_TAIL = re.compile(r"-h[0-9a-f]{10}$")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def name_key(raw: str, max_len: int = MAX_KEY) -> str:
    """Return the storage-safe key for a role or instance name (see module docstring)."""
    if not raw:
        raise InvalidName("a role or instance name must not be empty")
    if (
        len(raw) <= max_len
        and _CLEAN.fullmatch(raw)
        and not _HASHED_TAIL.search(raw)
        and not raw.endswith(POISON_SUFFIX)  # "a-poison" must not meet "a"'s poison queue
    ):
        return raw
    tail = "-h" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    body = _NOT_ALNUM.sub("-", raw.lower()).strip("-")[: max_len - len(tail)].strip("-")
    return f"{body or 'x'}{tail}"


def check_id(value: str, what: str = "id") -> str:
    """Refuse a run or job id that is not of the plain form (see ``ID_PATTERN``)."""
    if not PLAIN_ID.match(value):
        raise InvalidName(f"{what} {value[:80]!r} is not a plain id (letters, digits, . _ -)")
    return value


def check_namespace(namespace: str) -> str:
    """Namespaces are chosen by people, so refuse rather than rewrite a bad one."""
    if not (1 <= len(namespace) <= MAX_NAMESPACE and _CLEAN.fullmatch(namespace)):
        raise InvalidName(
            f"namespace {namespace!r} must be 1-{MAX_NAMESPACE} lowercase letters, digits "
            "and single hyphens"
        )
    return namespace


def check_agent_version(version: str) -> str:
    """Refuse a version that could not safely name a blob or a directory."""
    if not _AGENT_VERSION.fullmatch(version):
        raise InvalidName(
            f"agent version {version!r} must start with a digit and use only letters, digits "
            "and . + ! _ - (as PEP 440 versions do), at most 64 characters"
        )
    return version


@dataclass(frozen=True)
class Names:
    """Storage names for one namespace (one rolecall installation in an account)."""

    namespace: str = DEFAULT_NAMESPACE

    def __post_init__(self) -> None:
        check_namespace(self.namespace)

    # --- queues ------------------------------------------------------------------------

    def role_queue(self, role: str) -> str:
        """One-of-N jobs for any instance of ``role`` (competing consumers)."""
        return f"{self.namespace}-role-{name_key(role)}"

    def instance_queue(self, instance: str) -> str:
        """Jobs for exactly this instance; survives its reimages because names are stable."""
        return f"{self.namespace}-inst-{name_key(instance)}"

    @property
    def events_queue(self) -> str:
        """Where agents before 0.2 post hellos and completions (any role may write it): folded
        with the same checks as the results queues, minus the channel's own guarantee."""
        return f"{self.namespace}-events"

    @staticmethod
    def poison_queue(queue: str) -> str:
        return queue + POISON_SUFFIX

    @staticmethod
    def source_of_poison(poison_queue: str) -> str:
        if not poison_queue.endswith(POISON_SUFFIX):
            raise InvalidName(f"{poison_queue!r} is not a poison queue")
        return poison_queue[: -len(POISON_SUFFIX)]

    @property
    def queue_prefix(self) -> str:
        return f"{self.namespace}-"

    # --- containers --------------------------------------------------------------------

    @property
    def payloads_container(self) -> str:
        """Scripts, archives and agent wheels, content-addressed, and the agent release
        documents naming those wheels; written by the controller only."""
        return f"{self.namespace}-payloads"

    @property
    def state_container(self) -> str:
        """Baselines, run records and instance records."""
        return f"{self.namespace}-state"

    @property
    def logs_container(self) -> str:
        """Full job logs, written by workers."""
        return f"{self.namespace}-logs"

    @property
    def containers(self) -> tuple[str, str, str]:
        return (self.payloads_container, self.state_container, self.logs_container)

    def results_container(self, role: str) -> str:
        """Reports (hellos, started notes, completions) from instances of ``role``, a blob
        each. Only that role's credentials may create blobs here (and nobody but the
        controller may read or delete them), so a report read from it speaks for that role at
        most. Its refused reports go to ``poison_queue(results_container(role))``."""
        return f"{self.namespace}-res-{name_key(role)}"

    @property
    def results_prefix(self) -> str:
        return f"{self.namespace}-res-"

    def role_key_of_results_container(self, container: str) -> str | None:
        """The role key a results container belongs to; None for anything else."""
        if not container.startswith(self.results_prefix):
            return None
        return container[len(self.results_prefix) :] or None

    @staticmethod
    def report_blob(instance: str, at: datetime, nonce: str) -> str:
        """One batch of reports: sorted by when it was written, unique without a lookup."""
        return f"{at:%Y%m%dT%H%M%S%f}-{name_key(instance)}-{nonce}.json"

    # --- blobs -------------------------------------------------------------------------

    @staticmethod
    def payload_blob(sha256: str) -> str:
        return f"sha256/{sha256}"

    @staticmethod
    def baselines_prefix() -> str:
        return "baselines/"

    @staticmethod
    def baseline_blob(role: str) -> str:
        return f"baselines/{name_key(role)}.json"

    @staticmethod
    def sealing_key_blob(role: str) -> str:
        """The public half of a role's sealing key (schemas/sealing.py): what the controller
        seals secrets to. Only the controller reads or writes it."""
        return f"sealing/{name_key(role)}.json"

    @staticmethod
    def instances_prefix(role: str | None = None) -> str:
        return "instances/" if role is None else f"instances/{name_key(role)}/"

    @staticmethod
    def instance_blob(role: str, instance: str) -> str:
        """Partitioned by role so ``--each`` lists one role's instances in one call."""
        return f"instances/{name_key(role)}/{name_key(instance)}.json"

    @staticmethod
    def role_key_of_instance_blob(blob: str) -> str:
        """The role key of a blob listed under :meth:`instances_prefix`."""
        return blob.split("/")[1]

    @staticmethod
    def history_blob(role: str, instance: str) -> str:
        return f"history/{name_key(role)}/{name_key(instance)}.json"

    @staticmethod
    def agents_prefix() -> str:
        """Agent releases, in the payloads container (schemas/agents.py says why there)."""
        return "agents/"

    @staticmethod
    def agent_release_blob(version: str) -> str:
        return f"agents/{check_agent_version(version)}.json"

    @staticmethod
    def agent_version_of_blob(blob: str) -> str | None:
        """The version a blob listed under :meth:`agents_prefix` is the release of."""
        if blob.startswith("agents/") and blob.endswith(".json"):
            version = blob[len("agents/") : -len(".json")]
            return version if _AGENT_VERSION.fullmatch(version) else None
        return None

    @staticmethod
    def runs_prefix() -> str:
        return "runs/"

    @staticmethod
    def run_blob(run_id: str) -> str:
        return f"runs/{check_id(run_id, 'run id')}.json"

    @staticmethod
    def run_id_of_blob(blob: str) -> str | None:
        """The run a blob listed under :meth:`runs_prefix` records; None for its neighbours
        (dispatch locks, result deltas)."""
        if blob.startswith("runs/") and blob.endswith(".json"):
            run_id = blob[len("runs/") : -len(".json")]
            return run_id if PLAIN_ID.match(run_id) else None
        return None

    @staticmethod
    def run_summary_blob(run_id: str) -> str:
        """How a finished run ended, in the blob's metadata, for ``rolecall runs``: beside
        the record, not a ``.json`` one, so no reader takes it for a run."""
        return f"runs/{check_id(run_id, 'run id')}.done"

    @staticmethod
    def run_id_of_summary_blob(blob: str) -> str | None:
        if blob.startswith("runs/") and blob.endswith(".done"):
            run_id = blob[len("runs/") : -len(".done")]
            return run_id if PLAIN_ID.match(run_id) else None
        return None

    @staticmethod
    def run_id_of_results_blob(blob: str) -> str | None:
        """The run a blob under :meth:`run_results_prefix` belongs to."""
        parts = blob.split("/")
        if len(parts) == 4 and parts[0] == "runs" and parts[2] == "results":
            return parts[1] if PLAIN_ID.match(parts[1]) else None
        return None

    @staticmethod
    def run_results_prefix(run_id: str) -> str:
        """Folded results of one run: documents each holding some targets' results, joined
        by whoever reads them (controller/results.py)."""
        return f"runs/{check_id(run_id, 'run id')}/results/"

    @staticmethod
    def run_targets_blob(run_id: str) -> str:
        """A split run's targets in dispatch order, written once beside its record."""
        return f"runs/{check_id(run_id, 'run id')}/targets.json"

    @staticmethod
    def run_results_blob(run_id: str, name: str) -> str:
        return f"{Names.run_results_prefix(run_id)}{name}.json"

    @staticmethod
    def instance_keys_prefix(role: str) -> str:
        return f"keys/{name_key(role)}/"

    @staticmethod
    def instance_key_blob(role: str, instance: str) -> str:
        """The public key an instance signs its reports with, enrolled by the operator when
        it issued the instance's credentials (``rolecall sas worker``)."""
        return f"keys/{name_key(role)}/{name_key(instance)}.json"

    @staticmethod
    def run_lock_blob(run_id: str) -> str:
        """Leased while a controller dispatches the run. Beside the record, not the record
        itself: a lease on the record would block every fold into it too."""
        return f"runs/{check_id(run_id, 'run id')}.lock"

    @staticmethod
    def log_blob(run_id: str, job_id: str, instance: str, attempt: int, token: str | None) -> str:
        """Where an attempt's log goes. ``token`` is random, chosen by the worker at upload
        and reported in its signed completion: a name another instance could work out (a
        job learns its run id) could be created first to keep the real log out. None: the
        name agents before contract 1.4 used, still accepted from them."""
        check_id(run_id, "run id")
        check_id(job_id, "job id")
        where = f"{run_id}/{job_id}/{name_key(instance)}/{attempt}"
        if token is None:
            return f"{where}.log"
        if not _LOG_TOKEN.fullmatch(token):
            raise InvalidName("a log token is 32 lowercase hex digits")
        return f"{where}.{token}.log"

    @staticmethod
    def is_log_blob(path: str, run_id: str, job_id: str, instance: str, attempt: int) -> bool:
        """Whether ``path`` is a name ``log_blob`` gives this attempt (with any token)."""
        legacy = Names.log_blob(run_id, job_id, instance, attempt, None)
        prefix = legacy.removesuffix("log")
        rest = path.removeprefix(prefix) if path.startswith(prefix) else None
        return rest == "log" or (rest is not None and bool(_LOG_FILE.fullmatch(rest)))

    @staticmethod
    def step_logs_prefix(run_id: str, instance: str) -> str:
        """Every baseline step log of one instance in one baseline run (one List Blobs)."""
        return f"{run_id}/steps/{name_key(instance)}/"

    @staticmethod
    def step_log_blob(run_id: str, instance: str, step: int, incarnation: str, tried: str) -> str:
        """One application of one baseline step: a step is retried until it succeeds and
        re-run by every incarnation, and a log blob is created once and never overwritten,
        so each try has its own (``tried`` names the try within the incarnation)."""
        return f"{Names.step_logs_prefix(run_id, instance)}{step}/{incarnation}.{tried}.log"

    @staticmethod
    def step_of_log_blob(path: str) -> int | None:
        """The step index of a blob listed under :meth:`step_logs_prefix`."""
        parts = path.split("/")
        return int(parts[3]) if len(parts) == 5 and parts[3].isdigit() else None

    @staticmethod
    def blob_address(container: str, path: str) -> str:
        """One string for a blob, as a completion names its log and a SAS bundle keys a
        blob's token."""
        return f"{container}/{path}"

    @staticmethod
    def split_blob_address(address: str) -> tuple[str, str]:
        """(container, path) of a :meth:`blob_address`: container names have no slash."""
        container, path = address.split("/", 1)
        return container, path

    # --- ids derived from names --------------------------------------------------------

    @staticmethod
    def baseline_run_id(role: str, version: int) -> str:
        """Baseline application is reported as a run, so ``status`` works for it too."""
        return f"baseline-{name_key(role)}-v{version}"

    @staticmethod
    def job_id(run_id: str, target: str) -> str:
        """Deterministic, so a duplicate dispatch is recognised by the worker's markers."""
        return f"{run_id}.{name_key(target)}"
