"""Windows Job Objects: one per job, so that no process a job started outlives its job or
its agent.

Windows has no process groups to kill: ``taskkill /T`` walks parent links, and a grandchild
whose parent already exited has none. A Job Object holds every process started inside it,
however deep, and ``TerminateJobObject`` ends them all at once. Created with
``KILL_ON_JOB_CLOSE``, the job dies with its last handle, which the agent holds: an agent
that crashes or is killed takes its job's processes with it, as systemd's cgroup does on
Linux, instead of leaving them running while the lease lapses and another instance runs the
job again.

A process must be in the job before it can start another, so the job's first process is
created suspended, assigned, then resumed (``NtResumeProcess``: subprocess does not keep
the main thread's handle; psutil resumes processes the same way).

The surface the executor uses, each a thin call into kernel32 or ntdll:

* ``JobObject.create()``: a new job that kills on close and shows no crash dialogs;
* ``job.adopt(pid)``: assign a (suspended) process; ``resume_process(pid)``;
* ``job.active_processes()``: how many of its processes are alive;
* ``job.terminate()``; ``job.close()``;
* ``send_ctrl_break(pid)``: Ctrl+Break to a process group on the agent's console, the
  grace stage before ``terminate`` (False when there is no shared console).

The structures are declared with fixed-width fields so their layout, and so this module's
arithmetic, is checked on Linux (tests/test_windows.py).
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

DWORD = ctypes.c_uint32
LARGE_INTEGER = ctypes.c_int64
ULONGLONG = ctypes.c_uint64
SIZE_T = ctypes.c_size_t

JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION = 0x00000400
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JobObjectBasicAccountingInformation = 1
JobObjectExtendedLimitInformation = 9
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100
PROCESS_SUSPEND_RESUME = 0x0800
CREATE_SUSPENDED = 0x00000004
CREATE_NEW_PROCESS_GROUP = 0x00000200
CTRL_BREAK_EVENT = 1

#: the job's limits: dies with the agent's handle; a crashing process exits instead of
#: waiting on a Windows Error Reporting dialog nobody will ever see
JOB_LIMITS = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_DIE_ON_UNHANDLED_EXCEPTION


class BasicLimitInformation(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", LARGE_INTEGER),
        ("PerJobUserTimeLimit", LARGE_INTEGER),
        ("LimitFlags", DWORD),
        ("MinimumWorkingSetSize", SIZE_T),
        ("MaximumWorkingSetSize", SIZE_T),
        ("ActiveProcessLimit", DWORD),
        ("Affinity", SIZE_T),
        ("PriorityClass", DWORD),
        ("SchedulingClass", DWORD),
    ]


class IoCounters(ctypes.Structure):
    _fields_ = [
        (name, ULONGLONG)
        for name in (
            "ReadOperationCount",
            "WriteOperationCount",
            "OtherOperationCount",
            "ReadTransferCount",
            "WriteTransferCount",
            "OtherTransferCount",
        )
    ]


class ExtendedLimitInformation(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", BasicLimitInformation),
        ("IoInfo", IoCounters),
        ("ProcessMemoryLimit", SIZE_T),
        ("JobMemoryLimit", SIZE_T),
        ("PeakProcessMemoryUsed", SIZE_T),
        ("PeakJobMemoryUsed", SIZE_T),
    ]


class BasicAccountingInformation(ctypes.Structure):
    _fields_ = [
        ("TotalUserTime", LARGE_INTEGER),
        ("TotalKernelTime", LARGE_INTEGER),
        ("ThisPeriodTotalUserTime", LARGE_INTEGER),
        ("ThisPeriodTotalKernelTime", LARGE_INTEGER),
        ("TotalPageFaultCount", DWORD),
        ("TotalProcesses", DWORD),
        ("ActiveProcesses", DWORD),
        ("TotalTerminatedProcesses", DWORD),
    ]


def job_limits() -> ExtendedLimitInformation:
    info = ExtendedLimitInformation()
    info.BasicLimitInformation.LimitFlags = JOB_LIMITS
    return info


def spawn_flags() -> int:
    """How the job's first process is created: suspended until it is in its job, in a
    process group of its own so Ctrl+Break reaches it and not the agent."""
    return CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP


class JobObject:
    def __init__(self, handle: int) -> None:
        self.handle = handle

    @classmethod
    def create(cls) -> JobObject:
        k32 = _kernel32()
        handle = k32.CreateJobObjectW(None, None)
        if not handle:
            raise _last_error("CreateJobObject")
        job = cls(handle)
        info = job_limits()
        if not k32.SetInformationJobObject(
            handle, JobObjectExtendedLimitInformation, ctypes.byref(info), ctypes.sizeof(info)
        ):
            error = _last_error("SetInformationJobObject")
            job.close()
            raise error
        return job

    def adopt(self, pid: int) -> None:
        """Put process ``pid`` (created suspended) in this job."""
        k32 = _kernel32()
        process = k32.OpenProcess(PROCESS_SET_QUOTA | PROCESS_TERMINATE, False, pid)
        if not process:
            raise _last_error("OpenProcess")
        try:
            if not k32.AssignProcessToJobObject(self.handle, process):
                raise _last_error("AssignProcessToJobObject")
        finally:
            k32.CloseHandle(process)

    def active_processes(self) -> int:
        acct = BasicAccountingInformation()
        ok = _kernel32().QueryInformationJobObject(
            self.handle,
            JobObjectBasicAccountingInformation,
            ctypes.byref(acct),
            ctypes.sizeof(acct),
            None,
        )
        if not ok:
            raise _last_error("QueryInformationJobObject")
        return int(acct.ActiveProcesses)

    def terminate(self, exit_code: int = 1) -> None:
        # fails only if the handle is bad; an empty job terminates fine
        _kernel32().TerminateJobObject(self.handle, exit_code)

    def close(self) -> None:
        """Drop the agent's handle: whatever is still in the job is killed now."""
        if self.handle:
            _kernel32().CloseHandle(self.handle)
            self.handle = 0


def resume_process(pid: int) -> None:
    k32 = _kernel32()
    process = k32.OpenProcess(PROCESS_SUSPEND_RESUME, False, pid)
    if not process:
        raise _last_error("OpenProcess")
    try:
        status = _ntdll().NtResumeProcess(process)
        if status != 0:
            raise OSError(f"NtResumeProcess failed: NTSTATUS {status & 0xFFFFFFFF:#010x}")
    finally:
        k32.CloseHandle(process)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` is still running (for checks, not the executor)."""
    k32 = _kernel32()
    synchronize, wait_timeout = 0x00100000, 0x00000102
    process = k32.OpenProcess(synchronize, False, pid)
    if not process:
        return False
    try:
        return bool(k32.WaitForSingleObject(process, 0) == wait_timeout)
    finally:
        k32.CloseHandle(process)


def send_ctrl_break(pid: int) -> bool:
    """Ctrl+Break to the process group ``pid`` leads; False if it could not be sent (the
    agent has no console the job shares: then the job is terminated without a grace)."""
    return bool(_kernel32().GenerateConsoleCtrlEvent(CTRL_BREAK_EVENT, pid))


# --- the DLLs, declared once ----------------------------------------------------------------

_dlls: dict[str, Any] = {}


def _kernel32() -> Any:
    if sys.platform != "win32":
        raise OSError("Windows only")
    k32 = _dlls.get("kernel32")
    if k32 is None:
        from ctypes import wintypes

        k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        handle, bool_ = wintypes.HANDLE, wintypes.BOOL
        _declare(k32.CreateJobObjectW, handle, ctypes.c_void_p, wintypes.LPCWSTR)
        _declare(k32.SetInformationJobObject, bool_, handle, ctypes.c_int, ctypes.c_void_p, DWORD)
        _declare(
            k32.QueryInformationJobObject,
            bool_, handle, ctypes.c_int, ctypes.c_void_p, DWORD, ctypes.c_void_p,
        )  # fmt: skip
        _declare(k32.AssignProcessToJobObject, bool_, handle, handle)
        _declare(k32.TerminateJobObject, bool_, handle, ctypes.c_uint)
        _declare(k32.OpenProcess, handle, DWORD, bool_, DWORD)
        _declare(k32.CloseHandle, bool_, handle)
        _declare(k32.GenerateConsoleCtrlEvent, bool_, DWORD, DWORD)
        _declare(k32.WaitForSingleObject, DWORD, handle, DWORD)
        _dlls["kernel32"] = k32
    return k32


def _ntdll() -> Any:
    if sys.platform != "win32":
        raise OSError("Windows only")
    nt = _dlls.get("ntdll")
    if nt is None:
        from ctypes import wintypes

        nt = ctypes.WinDLL("ntdll")
        _declare(nt.NtResumeProcess, ctypes.c_long, wintypes.HANDLE)
        _dlls["ntdll"] = nt
    return nt


def _declare(fn: Any, restype: Any, *argtypes: Any) -> None:
    fn.restype = restype
    fn.argtypes = list(argtypes)


def _last_error(what: str) -> OSError:
    if sys.platform != "win32":
        raise OSError("Windows only")
    code = ctypes.get_last_error()
    return OSError(0, f"{what} failed: {ctypes.FormatError(code)}", None, code)
