"""The launcher of a side-by-side install: it starts the current agent version, and switches
back by itself when an upgrade does not check in.

An install root (default /opt/rolecall; %ProgramFiles%\\rolecall on Windows) holds::

    launch.py       this file, copied there by the install script; agent upgrades never
                    replace it
    agent.json      which version runs: current, previous, python, pending, failed
    versions/<V>/   one virtual environment per agent version, side by side
    bin/rolecall    (Linux) ``exec <python> -I <root>/launch.py "$@"``: what the service runs

On Windows the service's process is this launcher too (``launch.py --service``): it loads
the service host (worker/winservice.py, with pywin32) from an installed version, and the host
runs ``launch.py worker`` as its child, as systemd runs ``bin/rolecall worker``.

It is stdlib only and run by the base interpreter (the one the virtual environments are made
with), because an image bakes one launcher and keeps it for as long as the image lives, while
the agents it starts keep changing. For the same reason ``agent.json`` is a contract between
this file and every agent version after it: keys are only ever added, and every writer keeps
the keys it does not know.

An upgrade (worker/self_update.py): the running agent installs ``versions/<V>``, checks it
with ``rolecall worker --check``, writes ``current=V, previous=<itself>, pending={version: V,
starts: 0}`` and exits 6 (UPGRADING), and the service manager starts the launcher again. While
V is pending the launcher runs it as a child rather than exec'ing it: it counts the start,
watches ``agent.json`` for V's check-in (V clears ``pending`` once it has registered and said
hello), and switches back to ``previous``, recording why under ``failed``, when V has been
started ``MAX_STARTS`` times without checking in or does not check in within ``check_in_s``
of a start. A launcher writing a rollback at the moment V checks in may win the race; then
V is stopped and the previous version runs, as the file says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "agent.json"
VERSIONS = "versions"
#: starts of a pending version without a check-in before switching back
MAX_STARTS = 3
#: how long a started pending version has to check in (agent.json ``check_in_s`` overrides)
CHECK_IN_S = 900.0
#: how long a stopped agent has to release its work and exit before it is killed
STOP_GRACE_S = 120.0
#: the agent's exit code for "installed a new version; start me again" (worker/shutdown.py)
UPGRADING = 6

State = dict[str, Any]


class BadState(Exception):
    """agent.json is missing or unreadable: this is not a side-by-side install."""


@dataclass(frozen=True)
class Start:
    """What to start, and the state to write first."""

    state: State
    version: str
    #: a pending version: run it as a child and watch for its check-in
    watch: bool = False
    note: str | None = None


# --- the decisions (pure) ---------------------------------------------------------------------


def decide(state: State, *, counts: bool, installed: Callable[[str], bool]) -> Start:
    """Which version to start. ``counts``: this is an agent start (``worker``, not a check);
    ``installed(v)``: versions/<v> holds an interpreter."""
    current = str(state["current"])
    pending = state.get("pending")
    if isinstance(pending, dict) and pending.get("version") == current:
        starts = int(pending.get("starts", 0))
        if not installed(current):
            return rollback(state, f"{current} is not installed")
        if starts >= MAX_STARTS:
            return rollback(state, f"{current} started {starts} times without checking in")
        if not counts:
            return Start(state, current)
        return Start({**state, "pending": {**pending, "starts": starts + 1}}, current, watch=True)
    if not installed(current) and installed(str(state.get("previous") or "")):
        return rollback(state, f"{current} is not installed")
    return Start(state, current)


def rollback(state: State, why: str) -> Start:
    """Back to the previous version, saying under ``failed`` what went wrong; the agent
    reports it and does not try that version again until the baseline changes."""
    current, previous = str(state["current"]), state.get("previous")
    if not previous:
        return Start(state, current, note=f"{why}; nothing to switch back to")
    pending = state.get("pending")
    baseline = pending.get("baseline") if isinstance(pending, dict) else None
    reason = f"rolled back to {previous}: {why}"
    failed = {"version": current, "baseline": baseline, "reason": reason}
    new = {**state, "current": previous, "previous": None, "pending": None, "failed": failed}
    return Start(new, str(previous), note=reason)


def record_install(state: State, version: str, python: str, *, had: Callable[[str], bool]) -> State:
    """What an install script records: ``version`` is current, the one before it (if still
    installed) is previous, nothing is pending or failed. Reinstalling the current version
    keeps its previous."""
    before = state.get("current")
    previous = state.get("previous") if before == version else before
    return {
        **state, "current": version, "python": python, "pending": None, "failed": None,
        "previous": previous if previous and had(str(previous)) else None,
    }  # fmt: skip


def host_version(state: State, has_host: Callable[[str], bool]) -> str | None:
    """The installed version the Windows service host is loaded from (``--service``): the
    previous one while an upgrade is pending, so that a broken new version cannot keep this
    launcher from switching back, else the current one; whichever of the two carries the
    host (pywin32 with it)."""
    current, previous = str(state["current"]), state.get("previous")
    pending = state.get("pending")
    order = [current, previous]
    if isinstance(pending, dict) and pending.get("version") == current:
        order = [previous, current]
    return next((str(v) for v in order if v and has_host(str(v))), None)


def is_agent_start(args: list[str]) -> bool:
    """``rolecall worker ...`` starts an agent; its ``--check`` (and ``--help``) do not."""
    return bool(args) and args[0] == "worker" and not {"--check", "--help"} & set(args)


def version_dir(root: Path, version: str) -> Path:
    return root / VERSIONS / version


def venv_python(venv: Path, windows: bool = sys.platform == "win32") -> Path:
    return venv / "Scripts" / "python.exe" if windows else venv / "bin" / "python"


def site_packages(venv: Path, windows: bool = sys.platform == "win32") -> Path:
    if windows:
        return venv / "Lib" / "site-packages"
    return venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


def interpreter(root: Path, version: str, windows: bool = sys.platform == "win32") -> Path:
    return venv_python(version_dir(root, version), windows)


def agent_command(
    root: Path, version: str, args: list[str], windows: bool = sys.platform == "win32"
) -> list[str]:
    return rolecall_command(version_dir(root, version), args, windows)


def rolecall_command(
    venv: Path, args: list[str], windows: bool = sys.platform == "win32"
) -> list[str]:
    """``python -I -m rolecall ARGS`` from ``venv``. ``-m`` rather than the ``rolecall``
    script, whose first line names the venv's path (a venv made under a temporary name and
    then renamed keeps working this way); ``-I`` so that neither the working directory nor
    PYTHON* variables can substitute another rolecall."""
    return [str(venv_python(venv, windows)), "-I", "-m", "rolecall", *args]


# --- agent.json -------------------------------------------------------------------------------


def read_state(root: Path) -> State:
    try:
        data = json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadState(
            f"no {STATE_FILE} in {root}: not a side-by-side install (docs/deploy.md)"
        ) from None
    except (OSError, ValueError) as e:
        raise BadState(f"cannot read {root / STATE_FILE}: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("current"), str):
        raise BadState(f"{root / STATE_FILE} names no current version")
    return data


def write_state(root: Path, state: State) -> None:
    """Atomic: a power cut leaves the old file or the new one, never half of either."""
    path = root / STATE_FILE
    tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# --- running ----------------------------------------------------------------------------------


def say(text: str) -> None:
    sys.stderr.write(f"rolecall launcher: {text}\n")
    sys.stderr.flush()


def launch(root: Path, args: list[str]) -> int:
    """Start the agent as ``decide`` says; return its exit code (or exec it)."""
    while True:
        state = read_state(root)
        start = decide(
            state, counts=is_agent_start(args), installed=lambda v: interpreter(root, v).exists()
        )
        if start.state != state:
            write_state(root, start.state)
        if start.note:
            say(start.note)
        command = agent_command(root, start.version, args)
        if not start.watch and sys.platform != "win32":
            os.execv(command[0], command)  # noqa: S606 - the agent becomes the main process
        code = _run(root, command, start.version if start.watch else None)
        if code is not None:
            return code
        # switched back while the pending version ran: start the previous one now


def _run(root: Path, command: list[str], pending: str | None) -> int | None:
    """Run the agent as a child, passing signals on. With ``pending``: None once it has been
    stopped for not checking in (and the switch back written)."""
    child = subprocess.Popen(command)
    forward = [signal.SIGTERM, signal.SIGINT] + (
        [signal.SIGBREAK] if sys.platform == "win32" else []  # type: ignore[attr-defined]
    )
    for s in forward:
        signal.signal(s, lambda signum, _frame: child.send_signal(signum))
    limit = check_in_s(read_state(root)) if pending else 0.0
    deadline = time.monotonic() + limit
    while True:
        try:
            return child.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        if pending is None:
            continue
        state = read_state(root)
        if (state.get("pending") or {}).get("version") != pending:
            pending = None  # checked in (or someone else decided): from here on, just wait
        elif time.monotonic() >= deadline:
            start = rollback(state, f"{pending} did not check in within {limit:g}s")
            write_state(root, start.state)
            say(start.note or "switching back")
            _stop(child)
            return None


def check_in_s(state: State) -> float:
    return float(state.get("check_in_s", CHECK_IN_S))


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    root = Path(__file__).resolve().parent
    try:
        if args[:1] == ["--record-install"] and len(args) == 2:
            return _record(root, args[1])
        if args == ["--service"]:
            return _service(root)
        return launch(root, args)
    except BadState as e:
        say(str(e))
        return 2


def _service(root: Path) -> int:
    """The Windows service's process (worker/winservice.py): the host, loaded from an
    installed version, runs this launcher again as its child to start the agent."""
    import site

    state = read_state(root)
    host = Path("rolecall", "worker", "winservice.py")
    version = host_version(state, lambda v: (site_packages(version_dir(root, v)) / host).exists())
    if version is None:
        raise BadState(f"no installed version in {root} carries the service host")
    before = list(sys.path)
    site.addsitedir(str(site_packages(version_dir(root, version))))
    sys.path[:] = [p for p in sys.path if p not in before] + before  # its packages first
    from rolecall.worker.winservice import serve

    return serve()


def _record(root: Path, version: str) -> int:
    if not interpreter(root, version).exists():
        raise BadState(f"{version_dir(root, version)} is not a virtual environment")
    state = read_state(root) if (root / STATE_FILE).exists() else {}
    had = lambda v: interpreter(root, v).exists()  # noqa: E731
    write_state(root, record_install(state, version, sys.executable, had=had))
    say(f"{version} is the current agent version in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
