"""What starting a run costs in storage transactions (exact: every request is counted by the
meter), and that the cheap path still finds a typo in a role name."""

from __future__ import annotations

from pathlib import Path

import pytest

from rolecall.controller.published import PublishedPayloads
from rolecall.controller.runs import RunRequest, start_run
from rolecall.schemas.errors import UnknownRole
from rolecall.schemas.runs import RunMode
from rolecall.storage.clients import Storage


def request(script: Path, role: str = "web") -> RunRequest:
    return RunRequest(role=role, script=script, mode=RunMode.ANY)


def test_a_repeat_run_any_costs_two_transactions(storage: Storage, tmp_path: Path) -> None:
    """Where the names exist (the role queue, the payload), `run --any` sends the job and
    writes the run record, and nothing else."""
    storage.ensure_queue(storage.names.role_queue("web"))  # an instance registered it
    script = tmp_path / "fix.sh"
    script.write_text("echo fixed\n")
    published = PublishedPayloads(tmp_path / "cache", storage.blob_endpoint)
    start_run(storage, request(script), published=published)
    storage.meter.reset()
    start_run(storage, request(script), published=published)
    assert storage.meter.snapshot() == {"queue.send": 1, "blob.put": 1}
    # a new operator process with the same cache directory: still two
    storage.meter.reset()
    again = PublishedPayloads(tmp_path / "cache", storage.blob_endpoint)
    start_run(storage, request(script), published=again)
    assert storage.meter.total == 2


def test_a_first_run_uploads_the_payload_once(storage: Storage, tmp_path: Path) -> None:
    storage.ensure_queue(storage.names.role_queue("web"))
    script = tmp_path / "fix.sh"
    script.write_text("echo fixed\n")
    start_run(storage, request(script), published=PublishedPayloads(None, "x"))
    assert storage.meter.snapshot().get("blob.put") == 2  # the payload, the run record


def test_run_any_on_an_unknown_role_is_refused(storage: Storage, tmp_path: Path) -> None:
    script = tmp_path / "fix.sh"
    script.write_text("echo fixed\n")
    with pytest.raises(UnknownRole, match="no registered instance and no baseline"):
        start_run(storage, request(script, role="wbe"))
