"""What ``rolecall logs`` prints for a target: its full log, or the output tails its
completion carried when the log fitted in them; for a baseline run, every step's log.

A job's log blob is named by its completion, which an instance wrote: it is read only from
the namespace's logs container (a hostile instance could otherwise point an operator's
command at run records, which hold secret environments). Baseline steps each leave a log of
their own per try (``Names.step_log_blob``); the newest of each step, from the incarnation
the run record shows, is the one printed.
"""

from __future__ import annotations

from rolecall.controller.joblogs import read_log
from rolecall.schemas.errors import ConfigError, NotFound
from rolecall.schemas.names import Names
from rolecall.schemas.runs import RunMode, RunRecord, TargetResult
from rolecall.storage.clients import BlobItem, Storage


def find_target(record: RunRecord, instance: str) -> tuple[str, TargetResult]:
    """The target ``instance`` names: its key, or the instance that ran an ``any`` job."""
    if instance in record.targets:
        return instance, record.targets[instance]
    for key, t in record.targets.items():
        if t.instance == instance:
            return key, t
    keys = ", ".join(list(record.targets)[:8]) or "none"
    raise ConfigError(f"run {record.run_id} has no target {instance!r} (its targets: {keys})")


def log_text(storage: Storage, record: RunRecord, t: TargetResult) -> str:
    if record.mode is RunMode.BASELINE and t.steps:
        steps = _step_logs(storage, record, t)
        if steps:
            return steps
    if t.log_blob:
        text = _read(storage, t.log_blob)
        if text is not None:
            return text
    return f"--- stdout ---\n{t.stdout_tail}\n--- stderr ---\n{t.stderr_tail}"


def _read(storage: Storage, address: str) -> str | None:
    """The log at ``address``; refused in one line if it is not a log a worker could have
    written (elsewhere than the logs container, or larger than any: controller/joblogs.py)."""
    try:
        return read_log(storage, address)
    except NotFound:
        return None


def _step_logs(storage: Storage, record: RunRecord, t: TargetResult) -> str:
    instance = t.instance or t.target
    container = storage.names.logs_container
    try:
        items = storage.list_blobs(container, Names.step_logs_prefix(record.run_id, instance))
    except NotFound:
        return ""
    newest: dict[int, BlobItem] = {}
    for item in items:
        step = Names.step_of_log_blob(item.name)
        if step is None or (t.incarnation and not _of(item, t.incarnation)):
            continue
        if step not in newest or _order(item) > _order(newest[step]):
            newest[step] = item
    parts = []
    for index in sorted(set(t.steps) | set(newest)):
        result = t.steps.get(index)
        head = f"=== step {index}" + (
            f": {result.outcome.value}"
            + (f", exit {result.exit_code}" if result.exit_code is not None else "")
            + (f", {result.duration_s:.1f}s" if result.duration_s is not None else "")
            if result is not None
            else ""
        )
        found = newest.get(index)
        body = _read(storage, Names.blob_address(container, found.name)) if found else None
        parts.append(f"{head} ===\n{body if body is not None else _no_log(result)}")
    return "\n".join(parts)


def _of(item: BlobItem, incarnation: str) -> bool:
    return item.name.rsplit("/", 1)[-1].startswith(incarnation + ".")


def _order(item: BlobItem) -> tuple[float, str]:
    return (item.last_modified.timestamp() if item.last_modified else 0.0, item.name)


def _no_log(result: object) -> str:
    if result is None:
        return "(not run by this incarnation yet)"
    return "(no log: applied under an earlier baseline version, or by an agent before 0.3)"
