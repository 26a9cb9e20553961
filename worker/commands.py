"""How a payload is started: which program runs it, with which command line, and what its
exit code means. Pure functions of the file, the arguments and where the programs are, so
every Windows decision here is tested on Linux.

The facts that force the Windows half:

* System programs are named by full path, never found through PATH: the agent runs as
  SYSTEM, PATH is whatever the last installer made it, and ``System32\\bash.exe`` is WSL's.
* CreateProcess hands a program one string; most programs split it by the C runtime's rules
  (``subprocess.list2cmdline``), but cmd.exe parses it itself: ``a&b`` as an argument runs
  ``b``. cmd gets a line built here (every argument that holds a metacharacter quoted, the
  whole after ``/s /c`` in one more pair of quotes), and what cmd cannot carry inside quotes
  at all (``"``, ``%``, ``!``, line breaks) is refused with a clear reason.
* ``powershell -File`` exits 0 or 1 whatever the script's last program returned, so an
  installer's 3010 is lost. Scripts run through ``run-script.ps1``, which exits with
  ``$LASTEXITCODE``.
* ``.msi`` and ``.msu`` are not programs (CreateProcess fails with WinError 193): they run
  through msiexec and wusa, quietly and without rebooting by themselves.
"""

from __future__ import annotations

import ntpath
import os
import subprocess
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from rolecall.schemas.errors import ConfigError, ExecutionError
from rolecall.schemas.jobs import Interpreter


class Package(str, Enum):
    """Windows package kinds: chosen by extension only (a job's interpreter never names them)."""

    MSI = "msi"
    MSU = "msu"


#: what starts a payload: the job's interpreter (never AUTO once chosen) or a package kind
Kind = Interpreter | Package


_BY_EXTENSION_POSIX: dict[str, Kind] = {
    ".sh": Interpreter.SH,
    ".bash": Interpreter.BASH,
    ".py": Interpreter.PYTHON,
    ".ps1": Interpreter.PWSH,
}
_BY_EXTENSION_WINDOWS: dict[str, Kind] = {
    ".ps1": Interpreter.POWERSHELL,
    ".cmd": Interpreter.CMD,
    ".bat": Interpreter.CMD,
    ".py": Interpreter.PYTHON,
    ".sh": Interpreter.BASH,
    ".msi": Package.MSI,
    ".msu": Package.MSU,
}

#: Exit codes that mean "succeeded, reboot before continuing": ERROR_SUCCESS_REBOOT_REQUIRED
#: (Windows installers) and 194 (the Linux convention, as in AWS SSM).
REBOOT_REQUIRED_CODES = frozenset({3010, 194})
#: ERROR_SUCCESS_REBOOT_INITIATED: the installer has already started the reboot.
REBOOT_STARTED_CODE = 1641
#: wusa: WU_S_ALREADY_INSTALLED, the update is there already (0x00240006).
WUSA_ALREADY_INSTALLED = 0x00240006

#: Characters cmd.exe expands or splits on even inside double quotes.
CMD_REFUSED = frozenset('"%!\r\n\x00')
#: Characters that make cmd.exe split or redirect outside double quotes.
_CMD_SPECIAL = frozenset(" \t&|<>^(),;=")

_PS_FLAGS = ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass", "-File"]
#: where run-script.ps1 finds the job's script (an argument would shift the job's own)
PS_SCRIPT_VAR = "ROLECALL_PS_SCRIPT"
PS_WRAPPER = Path(__file__).with_name("run-script.ps1")


class ExitMeaning(str, Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REBOOT_REQUIRED = "reboot_required"
    REBOOT_STARTED = "reboot_started"


@dataclass(frozen=True)
class Programs:
    """Where the programs that start payloads are."""

    sh: str
    bash: str
    python: str
    powershell: str
    pwsh: str
    cmd: str
    msiexec: str = "msiexec.exe"
    wusa: str = "wusa.exe"
    ps_wrapper: str = str(PS_WRAPPER)


def posix_programs(python: str = sys.executable) -> Programs:
    """Linux and macOS: the programs as before, through PATH."""
    return Programs(
        sh="sh", bash="bash", python=python, powershell="powershell", pwsh="pwsh", cmd="cmd.exe"
    )


def windows_programs(
    system_root: str, program_files: str, python: str, wrapper: str = str(PS_WRAPPER)
) -> Programs:
    """Full paths under ``%SystemRoot%`` and ``%ProgramFiles%`` (64-bit views: the agent
    refuses to run on a 32-bit Python, so System32 is not redirected)."""
    sys32 = ntpath.join(system_root, "System32")
    git_bash = ntpath.join(program_files, "Git", "bin", "bash.exe")
    return Programs(
        sh=git_bash,
        bash=git_bash,
        python=python,
        powershell=ntpath.join(sys32, "WindowsPowerShell", "v1.0", "powershell.exe"),
        pwsh=ntpath.join(program_files, "PowerShell", "7", "pwsh.exe"),
        cmd=ntpath.join(sys32, "cmd.exe"),
        msiexec=ntpath.join(sys32, "msiexec.exe"),
        wusa=ntpath.join(sys32, "wusa.exe"),
        ps_wrapper=wrapper,
    )


def this_machine_programs() -> Programs:
    if sys.platform != "win32":
        return posix_programs()
    return windows_programs(
        os.environ.get("SYSTEMROOT", r"C:\Windows"),
        os.environ.get("PROGRAMW6432") or os.environ.get("PROGRAMFILES", r"C:\Program Files"),
        sys.executable,
    )


@dataclass(frozen=True)
class Command:
    """How to start one payload. ``line``, when set, is the exact Windows command line
    (cmd.exe's); otherwise ``argv`` is quoted by the C runtime's rules."""

    argv: list[str]
    executable: str | None = None
    line: str | None = None
    #: environment the payload kind needs, applied over the job's own
    env: dict[str, str] = field(default_factory=dict)

    @property
    def args(self) -> str | list[str]:
        return self.line if self.line is not None else self.argv

    @property
    def program(self) -> str:
        return self.executable or self.argv[0]


def choose_kind(filename: str, requested: Interpreter, platform: str = sys.platform) -> Kind:
    if requested is not Interpreter.AUTO:
        return requested
    table = _BY_EXTENSION_WINDOWS if platform == "win32" else _BY_EXTENSION_POSIX
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return table.get(os.path.splitext(name)[1].lower(), Interpreter.EXEC)


def build_command(
    script: Path | str,
    kind: Kind,
    args: list[str],
    platform: str = sys.platform,
    programs: Programs | None = None,
) -> Command:
    """The command that runs ``script`` as ``kind`` on ``platform``."""
    s = str(script)
    if platform != "win32":
        return _posix_command(s, kind, args, programs or posix_programs())
    return _windows_command(s, kind, args, programs or this_machine_programs())


def _posix_command(s: str, kind: Kind, args: list[str], p: Programs) -> Command:
    match kind:
        case Interpreter.SH:
            return Command([p.sh, s, *args])
        case Interpreter.BASH:
            return Command([p.bash, s, *args])
        case Interpreter.PYTHON:
            return Command([p.python, s, *args])
        case Interpreter.POWERSHELL | Interpreter.PWSH:
            exe = p.powershell if kind is Interpreter.POWERSHELL else p.pwsh
            return Command([exe, *_PS_FLAGS, s, *args])
        case Interpreter.CMD:
            return Command([p.cmd, "/d", "/c", s, *args])
        case Package.MSI | Package.MSU:
            raise ExecutionError(f"a {kind.value} package runs on Windows only")
        case _:
            return Command([s, *args])


def _windows_command(s: str, kind: Kind, args: list[str], p: Programs) -> Command:
    match kind:
        case Interpreter.SH | Interpreter.BASH:
            return Command([p.bash, s, *args], executable=p.bash)
        case Interpreter.PYTHON:
            # child Pythons write the ANSI code page to a redirected stdout otherwise
            return Command([p.python, s, *args], executable=p.python, env={"PYTHONUTF8": "1"})
        case Interpreter.POWERSHELL | Interpreter.PWSH:
            exe = p.powershell if kind is Interpreter.POWERSHELL else p.pwsh
            argv = [exe, *_PS_FLAGS, p.ps_wrapper, *args]
            return Command(argv, executable=exe, env={PS_SCRIPT_VAR: s})
        case Interpreter.CMD:
            return Command([p.cmd, s, *args], executable=p.cmd, line=cmd_line(p.cmd, s, args))
        case Package.MSI:
            return Command([p.msiexec, "/i", s, "/qn", "/norestart", *args], executable=p.msiexec)
        case Package.MSU:
            return Command([p.wusa, s, "/quiet", "/norestart", *args], executable=p.wusa)
        case _:
            return Command([s, *args], executable=s)


def cmd_line(cmd_exe: str, script: str, args: list[str]) -> str:
    """cmd.exe's command line for a batch file and its arguments, or ExecutionError.

    ``/s /c "…"``: cmd strips exactly the outer pair of quotes and runs the rest, so a
    quoted script path with spaces and quoted arguments survive together. ``/d`` skips
    AutoRun commands, ``/v:off`` turns delayed expansion off whatever the registry says.
    """
    for value in (script, *args):
        bad = CMD_REFUSED.intersection(value)
        if bad:
            shown = "".join(sorted(repr(c)[1:-1] for c in bad))
            raise ExecutionError(
                f"cmd.exe cannot be passed {value[:60]!r} safely (it holds {shown}); pass such "
                "values in the job's environment instead"
            )
    inner = " ".join([f'"{script}"', *(_cmd_quote(a) for a in args)])
    return f'"{cmd_exe}" /d /v:off /s /c "{inner}"'


def _cmd_quote(arg: str) -> str:
    return f'"{arg}"' if not arg or _CMD_SPECIAL.intersection(arg) else arg


def windows_line(command: Command) -> str:
    """The command line Windows will see (for logs and tests)."""
    return command.line if command.line is not None else subprocess.list2cmdline(command.argv)


def exit_meaning(code: int | None, kind: Kind) -> ExitMeaning:
    """What an exit code says: installers report reboots through it."""
    if code == 0 or (kind is Package.MSU and code == WUSA_ALREADY_INSTALLED):
        return ExitMeaning.SUCCEEDED
    if code in REBOOT_REQUIRED_CODES:
        return ExitMeaning.REBOOT_REQUIRED
    if code == REBOOT_STARTED_CODE:
        return ExitMeaning.REBOOT_STARTED
    return ExitMeaning.FAILED


def bitness_problem(platform: str, pointer_bytes: int) -> str | None:
    """A 32-bit Python on Windows starts every job in the WOW64 views (SysWOW64 for
    System32, the 32-bit registry and Program Files): configuration lands in the wrong
    places, silently. Refused."""
    if platform == "win32" and pointer_bytes < 8:
        return (
            "this Python is 32-bit: its jobs would run in the 32-bit (WOW64) views of the "
            "file system and registry; install the agent with a 64-bit Python"
        )
    return None


def check_bitness() -> None:
    import struct

    problem = bitness_problem(sys.platform, struct.calcsize("P"))
    if problem is not None:
        raise ConfigError(problem)
