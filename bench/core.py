"""What every benchmark shares: figures and sections, sizes, a sandbox (its own Azurite and
namespace), child processes that never outlive a benchmark, and the record of the machine.

Each benchmark gets a fresh in-memory Azurite: Azurite's in-memory store slows down as
messages accumulate, so sharing one across benchmarks would make later ones pay for earlier
ones' leftovers.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from rolecall.devtools.azurite import PINNED_VERSION, Azurite
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from rolecall.storage.meter import Meter

T = TypeVar("T")

#: The ``rolecall`` console script of the interpreter running the suite.
ROLECALL = str(Path(sys.executable).with_name("rolecall"))
#: The trivial job every throughput benchmark runs: a ``true``-like sh script.
TRUE_SH = b"#!/bin/sh\nexit 0\n"


# --- results -------------------------------------------------------------------------------


@dataclass
class Figure:
    """One measured number, with the target it is judged against (if any)."""

    key: str
    label: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Section:
    """What one benchmark reports: figures, free-form tables and the explanation."""

    key: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    context: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def add(
        self,
        key: str,
        label: str,
        value: float | None,
        unit: str,
        *,
        target: tuple[str, float] | None = None,
        note: str = "",
    ) -> Figure:
        """Record a figure; ``target`` is ``("<=", 1.5)`` or ``(">=", 0.9)``."""
        met = None
        text = ""
        if target is not None and value is not None:
            op, bound = target
            met = value <= bound if op == "<=" else value >= bound
            text = f"{op} {bound:g}"
        elif target is not None:
            text = f"{target[0]} {target[1]:g}"
        fig = Figure(f"{self.key}.{key}", label, value, unit, text, met, note)
        self.figures.append(fig)
        return fig

    def value(self, key: str) -> float | None:
        for f in self.figures:
            if f.key == f"{self.key}.{key}":
                return f.value
        return None


@dataclass(frozen=True)
class Size:
    """Full size is what RESULTS.md reports; tiny exercises the same code in seconds."""

    tiny: bool

    def pick(self, full: T, tiny: T) -> T:
        return tiny if self.tiny else full


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


# --- the machine ---------------------------------------------------------------------------

PACKAGES = (
    "rolecall",
    "azure-storage-queue",
    "azure-storage-blob",
    "azure-core",
    "pydantic",
    "typer",
    "celery",
    "kombu",
    "psutil",
)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def azurite_installed_version() -> str:
    for d in (Path.cwd(), *Path(__file__).resolve().parents):
        pkg = d / "node_modules" / "azurite" / "package.json"
        if pkg.is_file():
            import json

            return str(json.loads(pkg.read_text()).get("version", "?"))
    return "?"


def node_version() -> str:
    try:
        out = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    except OSError:
        return "?"
    return out.stdout.strip() or "?"


def environment() -> dict[str, str]:
    """The facts every figure depends on; printed at the top of RESULTS.md."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu_model(),
        "memory": mem,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "azurite": f"{azurite_installed_version()} (PINNED_VERSION {PINNED_VERSION}), "
        f"in-memory (--inMemoryPersistence), HTTP on 127.0.0.1, one fresh instance per "
        f"benchmark, node {node_version()}",
        **{f"pkg {k}": v for k, v in versions.items()},
    }


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "?"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- processes -----------------------------------------------------------------------------


class Processes:
    """Children of one benchmark, each in its own process group, all ended on exit.

    A group per child means a worker's running job (or Celery's pool) ends with it; only
    processes started here are ever signalled, by their own ids.
    """

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], *, env: dict[str, str], log: Path, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the child's whole group (its jobs, its pool)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGKILL:
            proc.wait()

    @staticmethod
    def stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL what lingers; returns the exit code."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                Processes.kill(proc)
        # the leader may be gone while its group (a job, a pool child) lingers
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()

    def close(self) -> None:
        for p in self.procs:
            self.kill(p) if p.poll() is None else None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
        self.procs.clear()


# --- the sandbox ---------------------------------------------------------------------------


@dataclass
class Sandbox:
    """One benchmark's Azurite, scratch directory and children."""

    az: Azurite
    root: Path
    procs: Processes

    def namespace(self) -> str:
        return "b" + uuid.uuid4().hex[:10]

    def settings(self, namespace: str) -> StorageSettings:
        return StorageSettings(connection_string=self.az.connection_string, namespace=namespace)

    def storage(self, namespace: str, meter: Meter | None = None) -> Storage:
        return Storage(self.settings(namespace), meter=meter)

    def env(self, namespace: str, **extra: str) -> dict[str, str]:
        """A child's environment: this sandbox's Azurite and namespace, nothing inherited
        that could point it elsewhere."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLECALL_", "AZURE_"))}
        env.update(
            AZURE_STORAGE_CONNECTION_STRING=self.az.connection_string,
            ROLECALL_NAMESPACE=namespace,
            ROLECALL_BOOT_JITTER_S="0",  # the boot figure measures the agent, not a wait
            # figures comparable across releases: jobs unsigned, as they always were here
            ROLECALL_ACCEPT_UNSIGNED="1",
            PYTHONUNBUFFERED="1",
            **extra,
        )
        return env

    def worker(
        self,
        namespace: str,
        role: str,
        instance: str,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """A real ``rolecall worker`` process with its own state directory."""
        state = self.root / "disks" / namespace / instance
        cmd = [ROLECALL, "worker", "--role", role, "--instance", instance]
        cmd += ["--state-dir", str(state), *args]
        log = self.root / "logs" / f"{namespace}-{instance}.log"
        return self.procs.start(cmd, env=env or self.env(namespace), log=log)


@contextlib.contextmanager
def sandbox(name: str) -> Iterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix=f"rolecall-bench-{name}-"))
    procs = Processes()
    try:
        with Azurite() as az:
            try:
                yield Sandbox(az, root, procs)
            finally:
                procs.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- CPU accounting ------------------------------------------------------------------------


class CpuSpan:
    """CPU seconds spent, over a span, by this process's children (once waited for, with
    their own waited-for children: a worker's jobs, Celery's pool) and by Azurite.

    On a 2-core machine that is what decides throughput; splitting it says whose it is.
    """

    def __init__(self, azurite_pid: int | None) -> None:
        self.pid = azurite_pid
        self.t0 = self._children()
        self.a0 = self._azurite()

    @staticmethod
    def _children() -> float:
        import resource

        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    def _azurite(self) -> float:
        import psutil

        if self.pid is None:
            return 0.0
        try:
            t = psutil.Process(self.pid).cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    def stop(self) -> tuple[float, float]:
        """(children's CPU seconds, Azurite's CPU seconds) since the span began."""
        return self._children() - self.t0, self._azurite() - self.a0


# --- small helpers -------------------------------------------------------------------------


def parallel(fn: Callable[[Any], T], items: list[Any], threads: int = 16) -> list[T]:
    """Many independent storage calls at once (each SDK call is mostly waiting)."""
    if len(items) <= 2:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(fn, items))


def send_many(storage: Storage, queue: str, texts: list[str]) -> None:
    storage.ensure_queue(queue)
    parallel(lambda t: storage.send(queue, t), texts)


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2
