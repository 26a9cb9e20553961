"""Every Windows decision, tested on Linux: the platform calls are thin functions around
these (worker/jobobject.py, winacl.py, winservice.py), and what they are given here is what
Windows would give them.

What no Linux test can prove (that powershell.exe honours the wrapper, that a Job Object
kills a grandchild, that the service manager restarts the service) is what
deploy/windows/verify.ps1 checks on a real VM.
"""

from __future__ import annotations

import codecs
import ctypes
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rolecall.launch import host_version
from rolecall.schemas.errors import ExecutionError
from rolecall.schemas.jobs import Interpreter
from rolecall.storage.osnet import (
    ALWAYS_DIRECT,
    INSTANCE_METADATA_HOST,
    parse_winhttp_proxy,
    use_os_trust_store,
)
from rolecall.worker import jobobject
from rolecall.worker.boottime import parse_btime, rebooted_since
from rolecall.worker.cli_service import default_command
from rolecall.worker.commands import (
    PS_SCRIPT_VAR,
    ExitMeaning,
    Kind,
    Package,
    bitness_problem,
    build_command,
    choose_kind,
    exit_meaning,
    windows_line,
    windows_programs,
)
from rolecall.worker.decoding import decode_output
from rolecall.worker.environment import fresh_environment
from rolecall.worker.reboot import reboot_argv
from rolecall.worker.service import (
    AfterExit,
    RotatingLog,
    StartType,
    after_agent_exit,
    child_environment,
    parse_env_file,
    service_config,
)
from rolecall.worker.shutdown import ExitCode
from rolecall.worker.state import LocalState, StepMark
from rolecall.worker.winacl import (
    ADMINISTRATORS,
    SYSTEM,
    Ace,
    untrusted_files,
    untrusted_writers,
    write_access_problem,
)
from tests.fleet import cli

WIN = windows_programs(
    r"C:\Windows", r"C:\Program Files", r"C:\Program Files\rolecall\Scripts\python.exe",
    wrapper=r"C:\Program Files\rolecall\Lib\site-packages\rolecall\worker\run-script.ps1",
)  # fmt: skip
CACHE = r"C:\ProgramData\rolecall\state\cache"


def win(filename: str, *args: str, interpreter: Interpreter = Interpreter.AUTO) -> tuple[Kind, str]:
    kind = choose_kind(filename, interpreter, "win32")
    command = build_command(rf"{CACHE}\{filename}", kind, list(args), "win32", WIN)
    return kind, windows_line(command)


def split_like_msvcrt(line: str) -> list[str]:
    """How a program built with the Microsoft C runtime splits its command line (the
    2008+ rules CommandLineToArgvW follows): the reference list2cmdline is written for."""
    args: list[str] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            break
        arg, quoted = [], False
        while i < n and (quoted or line[i] not in " \t"):
            if line[i] == "\\":
                j = i
                while j < n and line[j] == "\\":
                    j += 1
                slashes = j - i
                if j < n and line[j] == '"':
                    arg.append("\\" * (slashes // 2))
                    if slashes % 2:
                        arg.append('"')
                        j += 1
                    i = j
                    continue
                arg.append("\\" * slashes)
                i = j
                continue
            if line[i] == '"':
                if quoted and i + 1 < n and line[i + 1] == '"':
                    arg.append('"')
                    i += 2
                    continue
                quoted = not quoted
                i += 1
                continue
            arg.append(line[i])
            i += 1
        args.append("".join(arg))
    return args


# --- command lines for each payload kind ----------------------------------------------------


def test_each_payload_kind_starts_by_full_path_on_windows() -> None:
    sys32 = r"C:\Windows\System32"
    cases = {
        "setup.ps1": rf"{sys32}\WindowsPowerShell\v1.0\powershell.exe",
        "setup.cmd": rf"{sys32}\cmd.exe",
        "setup.bat": rf"{sys32}\cmd.exe",
        "setup.py": WIN.python,
        "setup.sh": r"C:\Program Files\Git\bin\bash.exe",  # never WSL's System32\bash.exe
        "setup.msi": rf"{sys32}\msiexec.exe",
        "KB5000001.msu": rf"{sys32}\wusa.exe",
        "agent.exe": rf"{CACHE}\agent.exe",
    }
    for filename, program in cases.items():
        kind = choose_kind(filename, Interpreter.AUTO, "win32")
        command = build_command(rf"{CACHE}\{filename}", kind, [], "win32", WIN)
        assert command.executable == program, filename
    pwsh = build_command("x.ps1", Interpreter.PWSH, [], "win32", WIN)
    assert pwsh.executable == r"C:\Program Files\PowerShell\7\pwsh.exe"


def test_powershell_runs_through_the_wrapper_that_keeps_lastexitcode() -> None:
    command = build_command(
        rf"{CACHE}\a.ps1", Interpreter.POWERSHELL, ["-Name", "web 1"], "win32", WIN
    )
    assert command.argv[1:7] == ["-NoProfile", "-NonInteractive", "-ExecutionPolicy", "Bypass",
                                 "-File", WIN.ps_wrapper]  # fmt: skip
    assert command.argv[7:] == ["-Name", "web 1"], "the job's arguments reach it unshifted"
    assert command.env == {PS_SCRIPT_VAR: rf"{CACHE}\a.ps1"}
    wrapper = (Path(__file__).parent.parent / "worker" / "run-script.ps1").read_text()
    body = [ln for ln in wrapper.splitlines() if ln and not ln.startswith("#")]
    assert body == [
        "$global:LASTEXITCODE = 0",
        f"& $env:{PS_SCRIPT_VAR} @args",
        "exit $global:LASTEXITCODE",
    ]


def test_installers_run_quietly_and_never_reboot_by_themselves() -> None:
    assert win("app.msi", "INSTALLDIR=C:\\App")[1] == (
        r"C:\Windows\System32\msiexec.exe /i C:\ProgramData\rolecall\state\cache\app.msi "
        r"/qn /norestart INSTALLDIR=C:\App"
    )
    assert win("KB1.msu")[1].endswith(r"KB1.msu /quiet /norestart")


def test_python_jobs_write_utf8() -> None:
    assert build_command("a.py", Interpreter.PYTHON, [], "win32", WIN).env == {"PYTHONUTF8": "1"}
    assert build_command("a.py", Interpreter.PYTHON, [], "linux").env == {}, "Linux unchanged"


def test_linux_command_lines_are_unchanged() -> None:
    assert build_command("/c/a.sh", Interpreter.SH, ["x"], "linux").argv == ["sh", "/c/a.sh", "x"]
    assert build_command("/c/a.ps1", Interpreter.PWSH, [], "linux").argv[0] == "pwsh"
    assert choose_kind("a.msi", Interpreter.AUTO, "linux") is Interpreter.EXEC
    with pytest.raises(ExecutionError, match="Windows only"):
        build_command("/c/a.msi", Package.MSI, [], "linux")


# --- hostile arguments ------------------------------------------------------------------------


def test_cmd_quotes_metacharacters_instead_of_running_them() -> None:
    _, line = win("setup.cmd", "a&b", "x|y", "1>2", "^c", "(d)", "e,f;g=h", "", "plain")
    assert line == (
        r'"C:\Windows\System32\cmd.exe" /d /v:off /s /c '
        r'""C:\ProgramData\rolecall\state\cache\setup.cmd" "a&b" "x|y" "1>2" "^c" "(d)" '
        r'"e,f;g=h" "" plain"'
    )
    inner = line.split(" /s /c ", 1)[1][1:-1]  # what cmd runs after stripping the outer pair
    outside = "".join(part for i, part in enumerate(inner.split('"')) if i % 2 == 0)
    assert not set(outside) & set("&|<>^()"), "no metacharacter is outside quotes"


def test_a_spaced_entrypoint_and_a_quoted_argument_survive_together() -> None:
    command = build_command(r"C:\w\my dir\run it.cmd", Interpreter.CMD, ["two words"], "win32", WIN)
    assert command.line is not None
    assert command.line.endswith(r'/s /c ""C:\w\my dir\run it.cmd" "two words""')


@pytest.mark.parametrize("hostile", ['say "hi"', "%PATH%", "!x!", "a\nb", "a\rb", "a\x00b"])
def test_cmd_refuses_what_it_cannot_carry(hostile: str) -> None:
    with pytest.raises(ExecutionError, match="cannot be passed"):
        win("setup.cmd", hostile)
    with pytest.raises(ExecutionError, match="cannot be passed"):
        build_command(rf"C:\w\{hostile}.cmd", Interpreter.CMD, [], "win32", WIN)


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=12)))
def test_other_programs_get_exactly_the_arguments_given(args: list[str]) -> None:
    command = build_command(rf"{CACHE}\a.ps1", Interpreter.POWERSHELL, args, "win32", WIN)
    assert split_like_msvcrt(subprocess.list2cmdline(command.argv)) == command.argv


# --- output decoding --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,codepage", [("Größe: 12 Kö", "cp850"), ("Ошибка доступа", "cp866"), ("ça été", "cp437")]
)
def test_oem_output_is_decoded_with_the_oem_code_page(text: str, codepage: str) -> None:
    assert decode_output(text.encode(codepage), codepage) == text


def test_utf16_output_with_or_without_a_bom() -> None:
    text = "Installation réussie\r\n"
    assert decode_output(codecs.BOM_UTF16_LE + text.encode("utf-16-le"), "cp850") == text
    assert decode_output(text.encode("utf-16-le"), "cp850") == text
    assert decode_output(text.encode("utf-16-le")) == text, "ASCII-ish UTF-16 is not UTF-8"


def test_utf8_wins_and_a_cut_sequence_at_either_end_does_not_switch_encodings() -> None:
    text = "héllo wörld ✓"
    data = text.encode()
    assert decode_output(data, "cp850") == text
    assert decode_output(data[2:], "cp850", partial_start=True) == text[2:]  # cut inside é
    assert decode_output(data[:-1], "cp850") == text[:-1] + "\ufffd"  # killed mid-character
    assert decode_output(b"\xff\xfeA", None)  # anything decodes to something


# --- exit codes -------------------------------------------------------------------------------


def test_exit_codes_mean_what_installers_say() -> None:
    assert exit_meaning(0, Interpreter.EXEC) is ExitMeaning.SUCCEEDED
    assert exit_meaning(3010, Package.MSI) is ExitMeaning.REBOOT_REQUIRED
    assert exit_meaning(194, Interpreter.SH) is ExitMeaning.REBOOT_REQUIRED
    assert exit_meaning(1641, Package.MSI) is ExitMeaning.REBOOT_STARTED
    assert exit_meaning(0x240006, Package.MSU) is ExitMeaning.SUCCEEDED  # already installed
    assert exit_meaning(0x240006, Interpreter.EXEC) is ExitMeaning.FAILED
    assert exit_meaning(1, Interpreter.POWERSHELL) is ExitMeaning.FAILED
    assert exit_meaning(None, Interpreter.EXEC) is ExitMeaning.FAILED


# --- reboot -----------------------------------------------------------------------------------


def test_reboot_is_decided_by_the_os_boot_time() -> None:
    assert parse_btime("cpu  1 2\nbtime 1700000000\nprocesses 9\n") == 1700000000
    assert parse_btime("cpu 1\n") is None
    assert rebooted_since(1700000000.0, 1700000000.9) is False  # one boot, read twice
    assert rebooted_since(1700000000.0, 1700000095.0) is True
    assert rebooted_since(None, 1700000000.0) is None


def test_marks_without_a_boot_time_fall_back_on_agent_starts(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("btime 100\n")
    state = LocalState(tmp_path, boot_time_source=tmp_path / "stat")
    assert state.os_boot == 100.0
    assert state.rebooted_since(StepMark("pending_reboot", state.boot, 100.0)) is False
    assert state.rebooted_since(StepMark("pending_reboot", state.boot, 40.0)) is True
    assert state.rebooted_since(StepMark("pending_reboot", "older-agent", None)) is True
    assert state.rebooted_since(StepMark("pending_reboot", state.boot, None)) is False


def test_the_reboot_command_is_split_without_eating_backslashes() -> None:
    assert reboot_argv(r"C:\Windows\System32\shutdown.exe /r /t 10", "win32") == [
        r"C:\Windows\System32\shutdown.exe", "/r", "/t", "10"
    ]  # fmt: skip
    assert reboot_argv(r'"C:\Program Files\x\reboot.exe" /now', "win32") == [
        r"C:\Program Files\x\reboot.exe", "/now"
    ]  # fmt: skip
    assert reboot_argv("shutdown.exe /r", "win32", system_root=r"D:\Win")[0] == (
        r"D:\Win\System32\shutdown.exe"  # System32, never PATH
    )
    assert reboot_argv("systemctl reboot", "linux") == ["systemctl", "reboot"]


# --- ACLs and owners ----------------------------------------------------------------------------

USER = "S-1-5-21-1-2-3-1001"
USERS = "S-1-5-32-545"


def test_state_owned_or_writable_by_someone_else_is_not_trusted() -> None:
    full, read = 0x001F01FF, 0x00120089
    mine = [Ace(SYSTEM, full), Ace(ADMINISTRATORS, full)]
    assert write_access_problem("d", ADMINISTRATORS, mine) is None
    assert write_access_problem("d", SYSTEM, [*mine, Ace(USERS, read)]) is None
    owned = write_access_problem("d", USER, mine)
    assert owned is not None and f"owned by {USER}" in owned
    writable = write_access_problem("d", SYSTEM, [*mine, Ace(USERS, 0x0004)])  # add subdir
    assert writable is not None and USERS in writable
    assert untrusted_writers([Ace(USER, 0x10000000), Ace(USERS, 0x0002, kind=1)]) == [USER]


def test_files_someone_else_planted_are_picked_out() -> None:
    planted = Path("cache/0f.ps1")
    owners = [(Path("jobs.journal"), SYSTEM), (planted, USER), (Path("steps"), ADMINISTRATORS)]
    assert untrusted_files(owners) == [planted]


# --- environment --------------------------------------------------------------------------------


def test_each_job_sees_the_registry_path_as_a_new_logon_would() -> None:
    base = {"Path": r"C:\Windows", "USERPROFILE": r"C:\Users\sys", "ROLECALL_X": "secret"}
    machine = {
        "Path": (r"C:\Windows;%ProgramFiles%\Git\cmd", True),
        "ProgramFiles": (r"C:\Program Files", False),
        "ROLECALL_SAS_FILE": ("x", False),
    }
    user = {"PATH": (r"%USERPROFILE%\bin", True), "TEMP": (r"%USERPROFILE%\Temp", True)}
    env = fresh_environment({k: v for k, v in base.items() if k != "ROLECALL_X"}, machine, user)
    upper = {k.upper(): v for k, v in env.items()}
    assert len(upper) == len(env), "one PATH, whatever its case"
    assert upper["PATH"] == r"C:\Windows;C:\Program Files\Git\cmd;C:\Users\sys\bin"
    assert upper["TEMP"] == r"C:\Users\sys\Temp"
    assert "ROLECALL_SAS_FILE" not in upper and "ROLECALL_X" not in upper


def test_machine_variables_expand_in_order_and_the_user_path_follows() -> None:
    machine = {"ProgramFiles": (r"C:\Program Files", False), "Path": (r"%ProgramFiles%\Git", True)}
    env = fresh_environment({}, machine, {"Path": (r"C:\u", False)})
    assert env["Path"] == r"C:\Program Files\Git;C:\u"


# --- the service ----------------------------------------------------------------------------------


def test_the_service_runs_the_base_interpreter_isolated_and_drains_before_the_deadline() -> None:
    config = service_config(
        base_python=r"C:\Python312\python.exe",
        host_script=r"C:\Program Files\rolecall\Lib\site-packages\rolecall\worker\service_entry.py",
        command=default_command(r"C:\Program Files\rolecall\Scripts"),
        data_dir=r"C:\ProgramData\rolecall",
        grace_s=30,
        for_image=True,
    )
    assert config.image_path.startswith(r'"C:\Python312\python.exe" -I -S "C:\Program Files')
    assert (
        config.parameters["Command"] == r'"C:\Program Files\rolecall\Scripts\rolecall.exe" worker'
    )
    assert config.parameters["EnvFile"] == r"C:\ProgramData\rolecall\worker.env"
    assert config.start is StartType.DISABLED
    assert config.failure_actions_on_non_crash and all(config.restart_delays_ms)
    stop = int(config.parameters["StopTimeoutSeconds"])
    assert 30 < stop < config.preshutdown_timeout_ms / 1000


def test_only_an_unasked_failure_makes_the_service_manager_restart_the_agent() -> None:
    assert after_agent_exit(ExitCode.OK, stop_requested=False) is AfterExit.STOPPED
    assert after_agent_exit(ExitCode.REBOOTING, stop_requested=False) is AfterExit.STOPPED
    assert after_agent_exit(1, stop_requested=True) is AfterExit.STOPPED
    for code in (1, ExitCode.CONFIG, ExitCode.ACCESS_DENIED, ExitCode.REBOOT_FAILED, None):
        assert after_agent_exit(code, stop_requested=False) is AfterExit.FAILED


def test_worker_env_reads_as_run_worker_ps1_and_systemd_read_it() -> None:
    text = "\ufeff# c\nROLECALL_USE_IMDS=true\n ROLECALL_NAMESPACE = 'rc' \nA=\"x=y\"\nEMPTY=\n=x\n"
    settings = parse_env_file(text)
    assert settings == {"ROLECALL_USE_IMDS": "true", "ROLECALL_NAMESPACE": "rc", "A": "x=y",
                        "EMPTY": None}  # fmt: skip
    env = child_environment({"Path": "p", "empty": "1"}, settings, "rolecall-stop-1")
    assert env["ROLECALL_STOP_EVENT"] == "rolecall-stop-1" and "empty" not in env


def test_the_service_log_rotates_at_start_and_at_its_size(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "worker.log", max_bytes=10, keep=2)
    (tmp_path / "worker.log").write_bytes(b"previous run\n")
    log.open()
    for chunk in (b"aaaaaa", b"bbbbbb", b"cccccc"):
        log.write(chunk)
    log.close()
    log.write(b"after close")  # the pump's last chunk after the host closed it: dropped
    assert (tmp_path / "worker.log").read_bytes() == b"cccccc"
    assert log.rotated(1).read_bytes() == b"bbbbbb" and log.rotated(2).read_bytes() == b"aaaaaa"
    assert not log.rotated(3).exists(), "the previous run's log rotated out of the two kept"


def test_the_service_command_says_it_is_for_windows(env: dict[str, str]) -> None:
    r = cli(env, "service", "install")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "Windows only" in r.stderr


# --- Job Objects, 64 bits -------------------------------------------------------------------------


def test_job_object_structures_have_their_x64_layout() -> None:
    assert ctypes.sizeof(jobobject.BasicLimitInformation) == 64
    assert jobobject.BasicLimitInformation.LimitFlags.offset == 16
    assert ctypes.sizeof(jobobject.IoCounters) == 48
    assert ctypes.sizeof(jobobject.ExtendedLimitInformation) == 144
    assert ctypes.sizeof(jobobject.BasicAccountingInformation) == 48
    assert jobobject.BasicAccountingInformation.ActiveProcesses.offset == 40
    limits = jobobject.job_limits().BasicLimitInformation.LimitFlags
    assert limits & jobobject.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
    assert jobobject.spawn_flags() & jobobject.CREATE_SUSPENDED


def test_a_32_bit_python_is_refused_on_windows_only() -> None:
    problem = bitness_problem("win32", 4)
    assert problem is not None and "WOW64" in problem
    assert bitness_problem("win32", 8) is None and bitness_problem("linux", 4) is None


# --- network: the machine proxy and the certificate store ----------------------------------


def test_the_winhttp_proxy_becomes_the_proxy_variables() -> None:
    env = parse_winhttp_proxy("proxy.corp:8080", "<local>;*.corp.example;10.*")
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == "http://proxy.corp:8080"
    direct = env["NO_PROXY"].split(",")
    assert INSTANCE_METADATA_HOST in direct, "instance metadata never goes through the proxy"
    assert set(ALWAYS_DIRECT) <= set(direct)
    assert ".corp.example" in direct and "10.*" not in direct[:3]
    per_scheme = parse_winhttp_proxy("http=a:3128;https=b:3129", "")
    assert (per_scheme["HTTP_PROXY"], per_scheme["HTTPS_PROXY"]) == (
        "http://a:3128",
        "http://b:3129",
    )
    assert parse_winhttp_proxy("", "<local>") == {}, "direct access sets nothing"


def test_the_os_trust_store_is_the_default_on_windows_only() -> None:
    assert use_os_trust_store("auto", "win32") and not use_os_trust_store("auto", "linux")
    assert use_os_trust_store("os", "linux") and not use_os_trust_store("bundled", "win32")


# --- the self-check verify.ps1 runs ----------------------------------------------------------


def test_the_selfcheck_passes_here_and_sees_no_reboot_that_did_not_happen(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The harness deploy/windows/verify.ps1 relies on, run where it can be: every check
    with a POSIX meaning passes, and the 'after reboot' phase fails without a reboot."""
    state = tmp_path / "reboot-state"
    before = cli(env, "service", "selfcheck", "--reboot-state", str(state))
    assert before.returncode == 0, before.stdout + before.stderr
    assert before.stdout.count("PASS") == 5 and "grandchild" in before.stdout
    after = cli(
        env, "service", "selfcheck", "--reboot-state", str(state), "--reboot-phase", "after"
    )
    assert after.returncode == 1
    assert "FAIL  reboot detection (after reboot)" in after.stdout


def test_a_side_by_side_service_runs_the_launcher_twice() -> None:
    """The service's process is the launcher (--service: it loads the host), and the host
    runs the launcher again (worker: it picks the agent version)."""
    config = service_config(
        base_python=r"C:\Python312\python.exe", host_script="unused", command="unused",
        data_dir=r"C:\ProgramData\rolecall", grace_s=30, for_image=False,
        launcher=r"C:\Program Files\rolecall\launch.py",
    )  # fmt: skip
    launcher = r'"C:\Python312\python.exe" -I "C:\Program Files\rolecall\launch.py"'
    assert config.image_path == f"{launcher} --service"
    assert config.parameters["Command"] == f"{launcher} worker"
    assert config.start is StartType.AUTO


def test_the_service_host_is_loaded_from_a_version_known_to_work() -> None:
    every = lambda v: True  # noqa: E731
    state = {"current": "0.4.0", "previous": "0.3.0", "pending": None}
    assert host_version(state, every) == "0.4.0"
    pending = {**state, "pending": {"version": "0.4.0", "starts": 1}}
    assert host_version(pending, every) == "0.3.0", "a pending upgrade may be broken"
    assert host_version(state, lambda v: v == "0.3.0") == "0.3.0", "one without pywin32"
    assert host_version({"current": "0.4.0"}, lambda v: False) is None
