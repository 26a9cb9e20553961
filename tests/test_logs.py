"""One log format for worker and controller: JSON lines for services, text at a terminal,
secrets redacted in both."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rolecall import logs
from rolecall.devtools.waiting import wait_for
from rolecall.schemas import EventBatch, Outcome, encode_message
from rolecall.storage.clients import Storage
from tests.factories import hello
from tests.fleet import ROLECALL

KEY = "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="
WORKER = {"role": "web", "instance": "web-0", "incarnation": "inc1"}
log = logging.getLogger("rolecall.worker")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def emit(fmt: str, secret: str) -> str:
    """Log one failing job, as the worker does, and return what reached the stream."""
    out = Terminal()
    logs.configure("info", WORKER, fmt=fmt, stream=out)
    logs.SECRETS.add(secret)
    try:
        raise RuntimeError(f"cannot connect with AccountName=a;AccountKey={KEY} as {secret}")
    except RuntimeError:
        extra = {"job_id": "r1.any", "run_id": "r1", "attempt": 2, "outcome": Outcome.FAILED}
        log.exception("job failed using %s", secret, extra=extra)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_both_formats_redact_account_keys_and_registered_secrets(fmt: str) -> None:
    secret = f"hunter-{fmt}-2"
    out = emit(fmt, secret)
    assert "job failed using" in out and "RuntimeError" in out
    assert KEY not in out and secret not in out
    assert "AccountKey=***" in out
    assert "outcome" in out and "Outcome.FAILED" not in out


def test_json_lines_keep_the_fields_tests_and_the_simulator_read() -> None:
    (line,) = emit("json", "pa55word-json").splitlines()
    record = json.loads(line)
    assert list(record)[:4] == ["ts", "level", "logger", "msg"]
    assert record["level"] == "error" and record["logger"] == "rolecall.worker"
    assert {k: record[k] for k in WORKER} == WORKER
    assert (record["job_id"], record["run_id"], record["attempt"]) == ("r1.any", "r1", 2)
    assert record["outcome"] == "failed"  # an Outcome, written as its value
    assert "Traceback" in record["error"] and KEY not in record["error"]
    assert '"job_id": "r1.any"' in line  # tests search the raw text for this spelling


def test_json_redacts_secrets_that_encoding_would_escape() -> None:
    secret = 'sécret"quote'
    out = emit("json", secret)
    assert json.dumps(secret)[1:-1] not in out and "s\\u00e9cret" not in out


def test_text_is_one_readable_line_with_the_fields() -> None:
    out = Terminal()
    logs.configure("info", WORKER, fmt="text", stream=out)
    log.info("job done", extra={"job_id": "r1.any", "outcome": "succeeded"})
    (line,) = out.getvalue().splitlines()
    assert " INFO    rolecall.worker: job done  " in line
    assert line.endswith("role=web instance=web-0 incarnation=inc1 job_id=r1.any outcome=succeeded")


def test_auto_is_text_on_a_terminal_and_json_otherwise() -> None:
    assert isinstance(logs.configure(fmt="auto", stream=Terminal()), logs.TextFormatter)
    assert isinstance(logs.configure(fmt="auto", stream=io.StringIO()), logs.JsonFormatter)


def test_the_worker_adding_its_identity_keeps_the_format_the_command_line_chose() -> None:
    logs.configure("info", fmt="json", stream=Terminal())
    again = logs.configure("info", WORKER, stream=Terminal())  # the agent's call: no format
    assert isinstance(again, logs.JsonFormatter) and again.context == WORKER


def test_the_log_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from rolecall.schemas.settings import StorageSettings

    monkeypatch.setenv("ROLECALL_LOG_FORMAT", "JSON")
    monkeypatch.setenv("ROLECALL_LOG_LEVEL", "WARNING")
    s = StorageSettings()
    assert (s.log_format, s.log_level) == ("json", "warning")
    monkeypatch.setenv("ROLECALL_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        StorageSettings()


# --- the processes -----------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_the_controller_service_logs_json_lines(
    env: dict[str, str], storage: Storage, tmp_path: Path
) -> None:
    err = tmp_path / "controller.log"
    argv = [ROLECALL, "controller", "--log-format", "json", "--poll-max", "0.3"]
    with err.open("w") as f:
        proc = subprocess.Popen(argv, env=env, stderr=f, stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: "folding events" in err.read_text(), timeout=60, what="the service")
        batch = EventBatch(sender="web-0", events=[hello()])
        storage.send(storage.names.events_queue, encode_message(batch))
        wait_for(lambda: "1 hellos" in err.read_text(), timeout=60, what="the hello folded")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = json_lines(err.read_text())
    assert [line["msg"] for line in lines][-1] == "stopped"
    assert {line["logger"] for line in lines} == {"rolecall.controller.service"}
    assert all({"ts", "level", "logger", "msg"} <= set(line) for line in lines)


def test_a_worker_on_a_terminal_format_logs_text_with_its_identity(
    env: dict[str, str], tmp_path: Path
) -> None:
    argv = [
        ROLECALL, "worker", "--once", "--role", "web", "--instance", "web-0",
        "--state-dir", str(tmp_path / "state"), "--log-format", "text",
    ]  # fmt: skip
    r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines and not any(line.startswith("{") for line in lines), r.stderr
    assert any(" rolecall.worker: " in line and "instance=web-0" in line for line in lines)
