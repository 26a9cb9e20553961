"""The Windows service host: pywin32's service framework carrying out worker/service.py.

The service manager starts the base interpreter running the side-by-side install's launcher
(``launch.py --service``: it loads this module from an installed version), or, outside such
an install, ``service_entry.py``; either calls ``serve()``. ``WorkerService`` accepts stop
and preshutdown; ``Host`` runs the configured command (the launcher again, which picks the
agent version to run, or the agent itself) in a kill-on-close Job Object, with the stop
event's name in its environment, and pumps its output into the rotated log. ``install()``
and ``uninstall()`` are what ``rolecall service install|uninstall`` call: idempotent, so
that running install again after an upgrade updates the registration in place.

Nothing here runs on Linux, and everything it decides is decided in worker/service.py.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rolecall.worker import jobobject
from rolecall.worker.service import (
    SERVICE_NAME,
    AfterExit,
    RotatingLog,
    ServiceConfig,
    StartType,
    after_agent_exit,
    child_environment,
    grace_of,
    parse_env_file,
    stop_deadline_s,
)
from rolecall.worker.winacl import owner_and_aces, write_access_problem

PARAMETERS_KEY = rf"SYSTEM\CurrentControlSet\Services\{SERVICE_NAME}\Parameters"
CREATE_NO_WINDOW = 0x08000000
ERROR_SERVICE_DOES_NOT_EXIST = 1060


class ServiceFailed(Exception):
    """Raised out of SvcRun: the service stops with an error and is restarted."""


def serve() -> int:
    """The service process's main: hand the thread to the service manager."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import servicemanager

    servicemanager.Initialize()
    servicemanager.PrepareToHostSingle(_service_class())
    servicemanager.StartServiceCtrlDispatcher()  # type: ignore[no-untyped-call]
    return 0


def _service_class() -> type:
    if sys.platform != "win32":
        raise OSError("Windows only")
    import win32event
    import win32service
    import win32serviceutil

    class WorkerService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = "rolecall worker"

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.stop_requested = win32event.CreateEvent(None, True, False, None)

        def GetAcceptedControls(self) -> int:
            accepted = int(super().GetAcceptedControls())  # type: ignore[no-untyped-call]
            return accepted | win32service.SERVICE_ACCEPT_PRESHUTDOWN

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=30_000)
            win32event.SetEvent(self.stop_requested)

        def SvcOtherEx(self, control: int, event_type: int, data: Any) -> None:
            if control == win32service.SERVICE_CONTROL_PRESHUTDOWN:
                self.SvcStop()

        def SvcDoRun(self) -> None:
            host = Host(read_parameters(), self.stop_requested, self._still_stopping)
            if host.run() is AfterExit.FAILED:
                raise ServiceFailed(f"the agent exited with {host.exit_code}")

        def _still_stopping(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=15_000)

    return WorkerService


class Host:
    """Runs the agent under the service and stops it the way the agent expects."""

    def __init__(self, params: dict[str, Any], stop_requested: Any, stopping: Any) -> None:
        self.command = str(params["Command"])
        self.env_file = Path(str(params["EnvFile"]))
        self.log = RotatingLog(Path(str(params["LogDir"])) / "worker.log")
        self.stop_requested = stop_requested
        self.stopping = stopping  # reports progress to the service manager while draining
        self.exit_code: int | None = None

    def run(self) -> AfterExit:
        if sys.platform != "win32":
            raise OSError("Windows only")
        import win32event

        self.log.open()
        settings = self._settings()
        name = f"rolecall-stop-{secrets.token_hex(8)}"
        stop_event = win32event.CreateEvent(None, True, False, name)
        proc, job = self._start(child_environment(dict(os.environ), settings, name))
        pump = threading.Thread(target=self._pump, args=(proc,), daemon=True)
        pump.start()
        asked = False
        while proc.poll() is None:
            if win32event.WaitForSingleObject(self.stop_requested, 1000) == 0:
                asked = True
                self._note("stop requested: the agent drains")
                win32event.SetEvent(stop_event)
                self._drain(proc, job, stop_deadline_s(grace_of(settings)))
                break
        self.exit_code = proc.poll()
        job.terminate()  # whatever the agent left; it is done
        job.close()
        pump.join(timeout=5)
        self._note(f"agent exited with {self.exit_code}")
        self.log.close()
        return after_agent_exit(self.exit_code, asked)

    def _settings(self) -> dict[str, str | None]:
        """worker.env, if only SYSTEM and Administrators can have written it."""
        try:
            owner, aces = owner_and_aces(self.env_file)
        except OSError:
            self._note(f"no {self.env_file}; starting with the machine environment only")
            return {}
        problem = write_access_problem(str(self.env_file), owner, aces)
        if problem is not None:
            raise ServiceFailed(f"refusing settings: {problem}")
        return parse_env_file(self.env_file.read_text(encoding="utf-8-sig", errors="replace"))

    def _start(self, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Any]:
        flags = jobobject.spawn_flags() | CREATE_NO_WINDOW
        proc = subprocess.Popen(
            self.command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, creationflags=flags,
        )  # fmt: skip
        job = jobobject.JobObject.create()
        job.adopt(proc.pid)
        jobobject.resume_process(proc.pid)
        self._note(f"started {self.command} (pid {proc.pid})")
        return proc, job

    def _drain(self, proc: subprocess.Popen[bytes], job: Any, deadline_s: float) -> None:
        end = time.monotonic() + deadline_s
        while proc.poll() is None and time.monotonic() < end:
            self.stopping()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            self._note(f"the agent did not stop within {deadline_s:g}s; terminating it")
            job.terminate()
            proc.wait(timeout=30)

    def _pump(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while chunk := os.read(fd, 65536):
            self.log.write(chunk)

    def _note(self, message: str) -> None:
        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "info",
                "logger": "rolecall.service", "msg": message}  # fmt: skip
        self.log.write((json.dumps(line) + "\n").encode())


# --- registration -------------------------------------------------------------------------


def read_parameters() -> dict[str, Any]:
    if sys.platform != "win32":
        raise OSError("Windows only")
    import winreg

    out: dict[str, Any] = {}
    with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, PARAMETERS_KEY) as key:
        for name in ("Command", "EnvFile", "LogDir", "StopTimeoutSeconds"):
            out[name] = winreg.QueryValueEx(key, name)[0]
    return out


def install(config: ServiceConfig) -> str:
    """Create or update the service to match ``config``; 'created' or 'updated'."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import win32service

    start = {
        StartType.AUTO: win32service.SERVICE_AUTO_START,
        StartType.DISABLED: win32service.SERVICE_DISABLED,
    }[config.start]
    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
    try:
        try:
            svc = win32service.OpenService(scm, config.name, win32service.SERVICE_ALL_ACCESS)
            done = "updated"
            win32service.ChangeServiceConfig(
                svc, win32service.SERVICE_WIN32_OWN_PROCESS, start,
                win32service.SERVICE_ERROR_NORMAL, config.image_path, None, False, None, None,
                None, config.display_name,
            )  # fmt: skip
        except win32service.error as e:
            if e.winerror != ERROR_SERVICE_DOES_NOT_EXIST:
                raise
            svc = win32service.CreateService(
                scm, config.name, config.display_name, win32service.SERVICE_ALL_ACCESS,
                win32service.SERVICE_WIN32_OWN_PROCESS, start,
                win32service.SERVICE_ERROR_NORMAL, config.image_path, None, False, None, None, None,
            )  # fmt: skip
            done = "created"
        try:
            _configure(svc, config)
        finally:
            win32service.CloseServiceHandle(svc)
    finally:
        win32service.CloseServiceHandle(scm)
    _write_parameters(config.parameters)
    return done


def _configure(svc: Any, config: ServiceConfig) -> None:
    if sys.platform != "win32":
        raise OSError("Windows only")
    import win32service

    change = win32service.ChangeServiceConfig2
    change(svc, win32service.SERVICE_CONFIG_DESCRIPTION, config.description)
    actions = [(win32service.SC_ACTION_RESTART, delay) for delay in config.restart_delays_ms]
    change(
        svc,
        win32service.SERVICE_CONFIG_FAILURE_ACTIONS,
        {"ResetPeriod": config.reset_period_s, "RebootMsg": None, "Command": None,
         "Actions": actions},
    )  # fmt: skip
    change(
        svc, win32service.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, config.failure_actions_on_non_crash
    )
    change(svc, win32service.SERVICE_CONFIG_PRESHUTDOWN_INFO, config.preshutdown_timeout_ms)


def _write_parameters(parameters: dict[str, str | int]) -> None:
    if sys.platform != "win32":
        raise OSError("Windows only")
    import winreg

    with winreg.CreateKeyEx(winreg.HKEY_LOCAL_MACHINE, PARAMETERS_KEY) as key:
        for name, value in parameters.items():
            if isinstance(value, int):
                winreg.SetValueEx(key, name, 0, winreg.REG_DWORD, value)
            else:
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)


def uninstall(name: str = SERVICE_NAME) -> bool:
    """Stop (letting the agent drain) and delete the service; False if there was none."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import win32service
    import win32serviceutil

    try:
        win32serviceutil.StopService(name)
    except win32service.error as e:
        if e.winerror == ERROR_SERVICE_DOES_NOT_EXIST:
            return False
    scm = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_ALL_ACCESS)
    try:
        svc = win32service.OpenService(scm, name, win32service.SERVICE_ALL_ACCESS)
        try:
            win32service.DeleteService(svc)
        finally:
            win32service.CloseServiceHandle(svc)
    finally:
        win32service.CloseServiceHandle(scm)
    return True
