"""Local instances for the demo, the simulator and the tests: real ``rolecall worker``
processes, each with its own state directory standing for its disk.

Reimaging an instance is what a host failure does to an Azure VM role: the process dies
without warning (SIGKILL) and the disk reverts to the base image (the state directory is
wiped); the instance comes back under the same name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path


def stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl+C, so a demo or simulation stopped by a supervisor (a
    CI timeout, ``kill``) runs its clean-up and leaves no workers or Azurite behind.
    Python's default for SIGTERM is to die on the spot, with no ``finally`` run."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and all its descendants, as losing the machine would.

    Killing the agent alone is not enough: it starts each job in a session of its own, so
    the job would live on and could write its effects after the "host" was gone. On Linux
    the tree is frozen first (SIGSTOP, so nothing in it can fork or be reparented out of
    reach), then killed; on Windows ``taskkill /T`` does the same; elsewhere only the agent
    is killed."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)],
                       capture_output=True, check=False)  # fmt: skip
        return
    tree = [proc.pid]
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGSTOP)
        frozen: set[int] = set()
        while todo := [p for p in _descendants(proc.pid) if p not in frozen]:
            for pid in todo:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
                frozen.add(pid)
        tree += sorted(frozen)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _descendants(root: int) -> list[int]:
    """Live descendants of ``root``, from /proc (empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def rolecall_command() -> list[str]:
    """How to start ``rolecall`` from this interpreter, installed script or not."""
    script = Path(sys.executable).with_name("rolecall")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from rolecall.cli import main; main()"]


@dataclass
class LocalInstance:
    role: str
    instance: str
    root: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    #: False: let the agent find its role and name itself (instance metadata)
    identity_flags: bool = True
    #: how to start ``rolecall`` (another version's, for a mixed fleet); default: this one's
    command: list[str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    kills: int = 0
    reimages: int = 0

    @property
    def state_dir(self) -> Path:
        return self.root / "disks" / self.instance

    @property
    def stats_file(self) -> Path:
        return self.root / "stats" / f"{self.instance}.{self.starts}.json"

    @property
    def log_path(self) -> Path:
        return self.root / "logs" / f"{self.instance}.{self.starts}.log"

    def start(self, *extra: str) -> LocalInstance:
        self.starts += 1
        for d in ("disks", "stats", "logs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        who = ["--role", self.role, "--instance", self.instance] if self.identity_flags else []
        rolecall = self.command or rolecall_command()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *rolecall, "worker", *who, "--state-dir", str(self.state_dir),
                    "--stats-file", str(self.stats_file), *self.args, *extra,
                ],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """The host fails: the agent and every job it started die at once; no signal
        handler runs, nothing is flushed."""
        if self.proc is not None and self.proc.poll() is None:
            kill_tree(self.proc)
            self.proc.wait()
            self.kills += 1

    def reimage(self, *, restart: bool = True) -> None:
        """Lose the instance and revert its disk to the base image, then boot it again."""
        self.kill()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.reimages += 1
        if restart:
            self.start()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Graceful: SIGTERM, the agent finishes or releases its job and exits."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    @property
    def incarnation(self) -> str | None:
        try:
            return (self.state_dir / "incarnation").read_text().strip() or None
        except FileNotFoundError:
            return None

    def logs(self) -> str:
        return "".join(
            p.read_text(errors="replace")
            for p in sorted((self.root / "logs").glob(f"{self.instance}.*.log"))
        )


class LocalFleet:
    """A set of local instances that never outlive their owner (use as a context manager)."""

    def __init__(self, root: Path, env: dict[str, str], args: list[str] | None = None) -> None:
        self.root = root
        self.env = env
        self.args = args or []
        self.instances: dict[str, LocalInstance] = {}

    def add(
        self, role: str, instance: str, *args: str, start: bool = True,
        command: list[str] | None = None,
    ) -> LocalInstance:  # fmt: skip
        inst = LocalInstance(
            role, instance, self.root, self.env, [*self.args, *args], command=command
        )
        self.instances[instance] = inst
        return inst.start() if start else inst

    def stop(self) -> None:
        procs = [i for i in self.instances.values() if i.alive]
        for i in procs:
            assert i.proc is not None
            i.proc.send_signal(signal.SIGTERM)
        for i in procs:
            i.stop()

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
