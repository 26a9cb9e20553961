"""Bounded by what a job does (issue 15, findings 6, 8, 9): the agent's memory, its log blobs
and its secrets, each proven against Azurite with a worker's own SAS bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rolecall.controller.sas import issue_worker_sas
from rolecall.schemas import Outcome
from rolecall.schemas.base import LOG_MAX_BYTES
from rolecall.schemas.codec import encode_document
from rolecall.schemas.names import Names
from rolecall.storage.clients import Storage
from tests.fleet import Fleet, Ledger, Operator, Worker, wait_for

MiB = 1024 * 1024
#: what the job of the memory test prints: more than the agent could ever hold
PRINTED = 500 * 1000 * 1000


@pytest.fixture
def own_sas(
    storage: Storage, workers: Fleet, env: dict[str, str], tmp_path: Path
) -> Callable[[str, str], Worker]:
    """Start a worker holding only the SAS bundle the operator issues for it."""

    def start(role: str, instance: str, *args: str) -> Worker:
        sas_file = tmp_path / f"{instance}.sas.json"
        sas_file.write_bytes(encode_document(issue_worker_sas(storage, role, instance, hours=1)))
        workers.env = {k: v for k, v in env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
        workers.env["ROLECALL_SAS_FILE"] = str(sas_file)
        return workers.worker(role, instance, *args)

    return start


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


# --- finding 9: memory is bounded whatever a job prints ------------------------------------


def test_a_job_printing_500_mb_leaves_the_agent_under_100_mb(
    own_sas: Callable[[str, str], Worker], ops: Operator, ledger: Ledger, storage: Storage
) -> None:
    """The agent once held a job's whole output, three times over (650 MB of RSS for 300 MB
    printed). Now the output is read back in pieces, and the log keeps its head and tail."""
    w = own_sas("web", "web-0")
    line = "chatty job output 0123456789 abcdefghijklmnopqrstuvwxyz"
    body = f'yes "{line}" | head -c {PRINTED}\necho "the last line"'
    ops.enqueue(ops.job("web", ops.publish(ledger.script("chatty", body)), timeout_s=280))
    done = wait_for(lambda: ops.completions("run1.any"), timeout=280, what="the chatty job")[0]
    assert w.proc is not None
    assert peak_rss(w.proc.pid) <= 100 * MiB
    assert done.outcome is Outcome.SUCCEEDED
    assert done.stdout_tail.endswith("the last line\n")
    assert done.log_cut_bytes and done.log_cut_bytes >= PRINTED - LOG_MAX_BYTES
    assert done.log_blob
    log = storage.get_blob(*Names.split_blob_address(done.log_blob)).data
    assert len(log) <= LOG_MAX_BYTES
    assert log.startswith(f"--- stdout ---\n{line}\n".encode())
    assert f"[rolecall: {done.log_cut_bytes:,} bytes cut here".encode() in log
    assert log.rstrip().endswith(b"the last line\n\n--- stderr ---")
