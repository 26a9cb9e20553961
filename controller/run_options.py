"""What ``rolecall run`` and ``rolecall retry`` accept, checked before anything is sent and
refused in the terms of the option that was wrong.

Click parses types (``--timeout abc`` is its error); this module refuses values of the right
type that mean nothing (``--timeout 0``, ``--deadline -1``, which would expire every target
into poison) and combinations that contradict each other (``--max-concurrency`` with
``--any``, ``--entrypoint`` for a script, an archive without one).
"""

from __future__ import annotations

from pathlib import Path

from rolecall.controller.dispatch import parse_limit
from rolecall.controller.payloads import payload_kind
from rolecall.schemas.errors import ConfigError
from rolecall.schemas.jobs import PayloadKind


def seconds(option: str, value: float | None) -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{option} {value:g}: must be more than 0 seconds")


def at_least_one(option: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{option} {value}: must be at least 1")


def limit(option: str, text: str | None, *, zero_ok: bool) -> None:
    """``N`` or ``P%``, as SSM's MaxConcurrency and MaxErrors."""
    if text is None:
        return
    try:
        value = parse_limit(text, 100)
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: give a number of targets or a percentage, e.g. 5 or 25%"
        ) from None
    if value == 0 and not zero_ok:
        raise ConfigError(f"{option} {text}: must allow at least one target")


def pairs(option: str, items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{option} {item!r}: give NAME=VALUE")
        out[name] = value
    return out


def mode(any_: bool, each: bool, instances: list[str] | None) -> None:
    if any_ == each:
        raise ConfigError("choose exactly one of --any (one instance) or --each (every one)")
    if any_ and instances:
        raise ConfigError("--instance needs --each; --any sends one job to the role queue")


def rate_control(any_: bool, max_concurrency: str | None, max_errors: str | None) -> None:
    if any_ and (max_concurrency is not None or max_errors is not None):
        raise ConfigError(
            "--max-concurrency and --max-errors pace --each runs; --any sends one job"
        )
    limit("--max-concurrency", max_concurrency, zero_ok=False)
    limit("--max-errors", max_errors, zero_ok=True)


def waiting(wait: bool, wait_timeout: float | None) -> None:
    if wait_timeout is not None and not wait:
        raise ConfigError("--wait-timeout needs --wait")
    seconds("--wait-timeout", wait_timeout)


def payload(script: Path, entrypoint: str | None) -> None:
    """The script or archive exists, and an archive says which file to start."""
    if not script.is_file():
        what = "is a directory" if script.is_dir() else "does not exist"
        raise ConfigError(f"--script {script}: {what}")
    if payload_kind(script) is PayloadKind.ARCHIVE:
        if not entrypoint:
            raise ConfigError(
                f"--script {script.name} is an archive: name the file to start in it with "
                "--entrypoint (e.g. --entrypoint deploy.sh)"
            )
    elif entrypoint:
        raise ConfigError(f"--entrypoint is for archives; {script.name} is a script")


#: what the job schema allows (schemas/jobs.py), said before anything is published
MAX_TIMEOUT_S = 7 * 24 * 3600
MAX_ATTEMPTS = 100


def run_flags(
    any_: bool,
    each: bool,
    instances: list[str] | None,
    timeout: float,
    deadline: float | None,
    max_attempts: int,
    max_concurrency: str | None,
    max_errors: str | None,
    script: Path,
    entrypoint: str | None,
    wait: bool,
    wait_timeout: float | None,
) -> None:
    """Every check of ``rolecall run``'s flags, in the order an operator reads them."""
    mode(any_, each, instances)
    seconds("--timeout", timeout)
    if timeout > MAX_TIMEOUT_S:
        raise ConfigError(f"--timeout {timeout:g}: at most {MAX_TIMEOUT_S} seconds (7 days)")
    seconds("--deadline", deadline)
    at_least_one("--max-attempts", max_attempts)
    if max_attempts > MAX_ATTEMPTS:
        raise ConfigError(f"--max-attempts {max_attempts}: at most {MAX_ATTEMPTS}")
    rate_control(any_, max_concurrency, max_errors)
    waiting(wait, wait_timeout)
    payload(script, entrypoint)
