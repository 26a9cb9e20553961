"""A stand-in for the service manager, for tests that need an agent restarted as systemd
restarts it (deploy/linux/rolecall-worker.service: Restart=always, RestartPreventExitStatus=5,
no start limit). What it leaves out: RestartSec (10 s there; a test has no reason to wait),
the cgroup (KillMode=mixed), and reboots. Each start logs to a file of its own."""

from __future__ import annotations

import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

#: a crash loop this long means the test has failed; stop restarting
MAX_STARTS = 30


@dataclass
class Start:
    log: Path
    code: int | None = None


@dataclass
class Service:
    argv: list[str]
    env: dict[str, str]
    logs: Path
    starts: list[Start] = field(default_factory=list)
    _proc: subprocess.Popen[bytes] | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> Service:
        self.logs.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while len(self.starts) < MAX_STARTS:
            start = Start(self.logs / f"start-{len(self.starts) + 1}.log")
            with self._lock:  # never start once stop() has begun
                if self._stopping.is_set():
                    return
                with start.log.open("wb") as log:
                    self._proc = subprocess.Popen(
                        self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                    )  # fmt: skip
                self.starts.append(start)
            start.code = self._proc.wait()
            if start.code == 5:
                return

    def codes(self) -> list[int | None]:
        return [s.code for s in self.starts]

    def log(self, n: int) -> str:
        """The output of the ``n``-th start (1-based)."""
        return self.starts[n - 1].log.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int | None:
        """systemctl stop: SIGTERM to the service's process, wait, and no more restarts."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._thread is not None:
            self._thread.join(timeout)
        return proc.returncode if proc is not None else None
