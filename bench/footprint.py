"""Benchmark 6: an idle worker's memory and CPU, as the instance's owner would see them.

A real ``rolecall worker`` at its default settings runs idle in the background of the suite.
Memory is read at the end (RSS, USS: what killing it would free, and the peak RSS of its
life from ``VmHWM``, which includes boot). CPU% is its own CPU time over wall time from
``settle`` seconds after start (boot excluded) to the end. To say where the memory goes,
fresh interpreters import the worker's dependencies layer by layer and report theirs.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from bench.core import Sandbox, Section, Size, sandbox

#: What a worker's resident memory is made of: fresh interpreters importing more and more.
LAYERS = (
    ("Python alone", ""),
    ("+ pydantic, pydantic-settings", "pydantic, pydantic_settings"),
    ("+ azure-storage-queue, azure-storage-blob",
     "pydantic, pydantic_settings, azure.storage.queue, azure.storage.blob"),
    ("+ the rest of the agent", "rolecall.worker.agent"),
    ("+ the command line (rolecall.cli)", "rolecall.worker.agent, rolecall.cli"),
)  # fmt: skip
_PROBE = (
    "import importlib, json, psutil\n"
    "for m in [x.strip() for x in {mods!r}.split(',') if x.strip()]:\n"
    "    importlib.import_module(m)\n"
    "i = psutil.Process().memory_full_info()\n"
    "print(json.dumps([i.rss, i.uss]))\n"
)


def composition() -> list[tuple[str, float, float]]:
    """(layer, RSS MB, USS MB) for each of LAYERS, each in a fresh interpreter."""
    import json
    import subprocess
    import sys

    out = []
    for label, mods in LAYERS:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE.format(mods=mods)],
            capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        rss, uss = json.loads(r.stdout)
        out.append((label, rss / 1e6, uss / 1e6))
    return out


def peak_rss(pid: int) -> int | None:
    """VmHWM: the high-water mark of the resident set (Linux)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


class FootprintBench:
    def __init__(self, size: Size) -> None:
        self.size = size
        self.settle = size.pick(60.0, 3.0)
        self.stack = contextlib.ExitStack()
        self.box: Sandbox | None = None
        self.proc: Any = None
        self.mark: tuple[float, float] | None = None
        self._timer: threading.Timer | None = None

    def start(self) -> FootprintBench:
        self.box = box = self.stack.enter_context(sandbox("footprint"))
        ns = box.namespace()
        box.storage(ns).ensure_containers()
        self.proc = box.worker(ns, "quiet", "quiet-0")
        self.started = time.monotonic()
        self._timer = threading.Timer(self.settle, self._mark)
        self._timer.daemon = True
        self._timer.start()
        return self

    def _mark(self) -> None:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(self.proc.pid).cpu_times()
            self.mark = (time.monotonic(), t.user + t.system)

    def finish(self) -> Section:
        try:
            return self._finish()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.stack.close()

    def _finish(self) -> Section:
        assert self.box is not None
        sec = Section("footprint", "6. Footprint of an idle worker")
        left = self.settle + self.size.pick(60.0, 2.0) - (time.monotonic() - self.started)
        if left > 0:
            time.sleep(left)
        if self.mark is None:
            self._mark()
            time.sleep(self.size.pick(60.0, 2.0))
        assert self.mark is not None
        p = psutil.Process(self.proc.pid)
        t = p.cpu_times()
        now = time.monotonic()
        cpu = (t.user + t.system - self.mark[1]) / (now - self.mark[0]) * 100
        mem = p.memory_full_info()
        peak = peak_rss(p.pid)
        threads = p.num_threads()
        self.box.procs.stop(self.proc)
        mb = 1_000_000
        sec.context.update(
            window=f"{now - self.mark[0]:.0f} s of idling, from {self.settle:g} s after start",
            process=f"`rolecall worker` at default settings, {threads} threads",
        )
        sec.add("rss_mb", "idle RSS", mem.rss / mb, "MB", target=("<=", 60))
        sec.add("uss_mb", "idle USS (private memory)", mem.uss / mb, "MB")
        sec.add("peak_rss_mb", "peak RSS over its life (VmHWM, boot included)",
                None if peak is None else peak / mb, "MB")  # fmt: skip
        sec.add("cpu_percent", "CPU while idle (its own CPU time / wall time)", cpu, "%")
        layers = composition()
        sec.tables.append(
            "What the resident memory is made of (fresh interpreters, imports only):\n\n"
            "| imported | RSS (MB) | USS (MB) |\n|---|---:|---:|\n"
            + "\n".join(f"| {label} | {rss:.1f} | {uss:.1f} |" for label, rss, uss in layers)
        )
        sec.notes.append(
            "RSS counts shared pages (libpython, libssl) once per process; USS is what ending "
            "the worker would free. Imports alone account for most of the idle worker's memory: "
            "the Azure Storage SDKs (which also load `cryptography` for client-side encryption) "
            "and pydantic; the agent's own state is small."
        )
        return sec
