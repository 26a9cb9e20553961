"""``rolecall service selfcheck``: the agent's platform parts, exercised on this machine.

What the Linux test suite cannot prove about Windows (that PowerShell honours the wrapper,
that a Job Object takes a grandchild with it, that a PATH an installer extends reaches the
next step, that the boot time reads the same within one boot) is run here through the same
code the agent uses (commands, executor, environment, boot time), with no storage account.
deploy/windows/verify.ps1 runs it after an install, adds what only the service manager can
show (drain on stop, restart after a crash), and prints one table. It runs on Linux too,
where the checks that have a POSIX meaning run and prove the harness.

``--reboot-phase before`` records a step pending reboot in a scratch state directory;
``--reboot-phase after``, run after the machine has rebooted, checks that the agent sees
the new boot (and ``before`` that it does not see one without a reboot).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rolecall.schemas.jobs import Interpreter
from rolecall.worker import executor
from rolecall.worker.commands import ExitMeaning, Kind, build_command, exit_meaning
from rolecall.worker.decoding import decode_output
from rolecall.worker.environment import JobEnvironment
from rolecall.worker.state import LocalState, StepMark

WINDOWS = sys.platform == "win32"


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Ran:
    code: int | None
    out: str
    timed_out: bool
    lingering: bool


def run_script(
    root: Path, name: str, body: str, kind: Kind, args: list[str] | None = None,
    timeout_s: float = 60.0,
) -> Ran:  # fmt: skip
    """One payload through the agent's own command line, environment and executor."""
    script = root / name
    script.write_text(body, encoding="utf-8")
    if kind is Interpreter.EXEC or kind is Interpreter.SH:
        script.chmod(0o700)
    command = build_command(script, kind, args or [])
    env = {**JobEnvironment().current(), **command.env}
    with (root / "out").open("w+b") as out, (root / "err").open("w+b") as err:
        result = executor.run(
            command, cwd=root, stdout=out, stderr=err, env=env, timeout_s=timeout_s
        )
        out.seek(0)
        text = decode_output(out.read())
    return Ran(result.exit_code, text, result.timed_out, result.lingering)


def process_alive(pid: int) -> bool:
    if WINDOWS:
        from rolecall.worker.jobobject import process_alive as alive

        return alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _wait_dead(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not process_alive(pid):
            return True
        time.sleep(0.1)
    return False


def check_timeout_kills_grandchild(root: Path) -> Check:
    pid_file = root / "grandchild.pid"
    if WINDOWS:
        body = (
            "$p = Start-Process -PassThru -WindowStyle Hidden -FilePath "
            f"\"$env:SystemRoot\\System32\\PING.EXE\" -ArgumentList '-n','600','127.0.0.1'\n"
            f"Set-Content -LiteralPath '{pid_file}' -Value $p.Id\nStart-Sleep -Seconds 600\n"
        )
        kind, name = Interpreter.POWERSHELL, "grandchild.ps1"
    else:
        body, kind, name = f"sleep 600 &\necho $! > '{pid_file}'\nwait\n", Interpreter.SH, "g.sh"
    ran = run_script(root, name, body, kind, timeout_s=8)
    if not pid_file.exists():
        return Check("timeout kills a grandchild", False, f"the job never started: {ran.out}")
    pid = int(pid_file.read_text().strip())
    dead = _wait_dead(pid)
    detail = f"timed out: {ran.timed_out}; grandchild {pid} {'gone' if dead else 'STILL RUNNING'}"
    return Check("timeout kills a grandchild", ran.timed_out and dead, detail)


def check_reboot_code_survives_the_wrapper(root: Path) -> Check:
    if WINDOWS:
        body = '& "$env:SystemRoot\\System32\\cmd.exe" /d /c exit 3010\nWrite-Output done\n'
        ran = run_script(root, "installer.ps1", body, Interpreter.POWERSHELL)
    else:
        ran = run_script(root, "installer.sh", "echo done\nexit 194\n", Interpreter.SH)
    meaning = exit_meaning(ran.code, Interpreter.POWERSHELL if WINDOWS else Interpreter.SH)
    ok = meaning is ExitMeaning.REBOOT_REQUIRED
    detail = f"exit {ran.code}: {meaning.value}"
    return Check("an installer's reboot code reaches the agent", ok, detail)


def check_arguments_arrive_intact(root: Path) -> Check:
    hostile = ["a&b", "two words", "-Name", "x|y"]
    if WINDOWS:
        ps = run_script(root, "args.ps1", "$args | ForEach-Object { \"[$_]\" }\n",
                        Interpreter.POWERSHELL, hostile)  # fmt: skip
        cmd = run_script(
            root, "args.cmd", "@echo off\r\necho [%~1][%~2]\r\n", Interpreter.CMD, hostile
        )
        ok = all(f"[{a}]" in ps.out for a in hostile) and "[a&b][two words]" in cmd.out
        return Check("hostile arguments arrive intact", ok, f"ps: {ps.out!r} cmd: {cmd.out!r}")
    sh = run_script(
        root, "args.sh", 'for a in "$@"; do echo "[$a]"; done\n', Interpreter.SH, hostile
    )
    ok = all(f"[{a}]" in sh.out for a in hostile)
    return Check("hostile arguments arrive intact", ok, repr(sh.out))


def check_path_change_reaches_next_step(root: Path) -> Check:
    if not WINDOWS:
        return Check("a PATH change reaches the next step", True, "Windows only: skipped")
    marker = rf"C:\rolecall-verify-{os.getpid()}"
    add = (
        "$p = [Environment]::GetEnvironmentVariable('Path', 'Machine')\n"
        f"[Environment]::SetEnvironmentVariable('Path', $p + ';{marker}', 'Machine')\n"
    )
    remove = (
        "$p = [Environment]::GetEnvironmentVariable('Path', 'Machine')\n"
        f"$p = ($p -split ';' | Where-Object {{ $_ -ne '{marker}' }}) -join ';'\n"
        "[Environment]::SetEnvironmentVariable('Path', $p, 'Machine')\n"
    )
    try:
        run_script(root, "install.ps1", add, Interpreter.POWERSHELL)
        seen = run_script(root, "next.ps1", "Write-Output $env:Path\n", Interpreter.POWERSHELL)
    finally:
        run_script(root, "restore.ps1", remove, Interpreter.POWERSHELL)
    ok = marker.lower() in seen.out.lower()
    return Check("a PATH change reaches the next step", ok, f"next step's PATH has {marker}: {ok}")


def check_reboot_detection(state_dir: Path, phase: str) -> Check:
    state = LocalState(state_dir)
    if state.os_boot is None:
        return Check("reboot detection", False, "the OS boot time cannot be read")
    mark_file = state_dir / "pending.boot"
    if phase == "before":
        state_dir.mkdir(parents=True, exist_ok=True)
        mark_file.write_text(repr(state.os_boot))
        again = LocalState(state_dir)
        same = not again.rebooted_since(StepMark("pending_reboot", "x", state.os_boot))
        return Check("reboot detection (same boot)", same, f"boot time {state.os_boot}")
    recorded = float(mark_file.read_text())
    seen = state.rebooted_since(StepMark("pending_reboot", state.boot, recorded))
    return Check("reboot detection (after reboot)", seen, f"{recorded} -> {state.os_boot}")


CHECKS: list[Callable[[Path], Check]] = [
    check_timeout_kills_grandchild,
    check_reboot_code_survives_the_wrapper,
    check_arguments_arrive_intact,
    check_path_change_reaches_next_step,
]


def run_checks(reboot_state: Path | None = None, reboot_phase: str = "before") -> list[Check]:
    results = []
    with tempfile.TemporaryDirectory(prefix="rolecall-selfcheck-") as tmp:
        for check in CHECKS:
            root = Path(tmp) / check.__name__
            root.mkdir()
            try:
                results.append(check(root))
            except Exception as e:  # a check that crashes has failed, with its reason
                results.append(Check(check.__name__, False, f"{type(e).__name__}: {e}"))
    if reboot_state is not None:
        results.append(check_reboot_detection(reboot_state, reboot_phase))
    return results
