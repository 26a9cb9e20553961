"""Start and stop a local Azurite (the Azure Storage emulator) for tests, the demo and
development.

Facts that shape this module:

* Azurite rejects the current SDK's API version unless started with ``--skipApiVersionCheck``.
* It collects telemetry unless ``--disableTelemetry``.
* It exits 0 even on a bad flag, so success is judged by the ports answering, never by the
  exit code. Ports may be 0: Azurite then picks free ones and prints them, which avoids the
  race of probing for a free port and binding it later.
* On SIGKILL it loses the last few seconds of writes (its metadata store autosaves), so it is
  always stopped with SIGTERM first; the chaos suite relies on that for graceful restarts.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rolecall.schemas.errors import ConfigError

#: Azurite's well-known development account. This is the only place its key is spelled.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: Pinned in package.json / package-lock.json.
PINNED_VERSION = "3.37.0"

_LISTENING = re.compile(r"Azurite (Blob|Queue) service is successfully listening at (\S+)")


def find_azurite() -> list[str]:
    """The command that starts Azurite: the repo's pinned npm install first."""
    override = os.environ.get("ROLECALL_AZURITE")
    if override:
        return [override]
    node = shutil.which("node")
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for d in (start, *start.parents):
            script = d / "node_modules" / "azurite" / "dist" / "src" / "azurite.js"
            if script.is_file() and node:
                return [node, str(script)]
    found = shutil.which("azurite")
    if found:
        return [found]
    raise ConfigError(
        "Azurite is not installed: run `npm ci` in the rolecall checkout (it pins "
        f"azurite@{PINNED_VERSION}), or set ROLECALL_AZURITE to its executable"
    )


def connection_string(blob_url: str, queue_url: str) -> str:
    scheme = "https" if blob_url.startswith("https") else "http"
    return (
        f"DefaultEndpointsProtocol={scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={blob_url};QueueEndpoint={queue_url};"
    )


class Azurite:
    """One Azurite process with blob and queue services on loopback."""

    def __init__(
        self,
        location: Path | None = None,
        *,
        blob_port: int = 0,
        queue_port: int = 0,
        cert: Path | None = None,
        key: Path | None = None,
        oauth: bool = False,
        host: str = "127.0.0.1",
    ) -> None:
        self.location = location
        self.blob_port, self.queue_port = blob_port, queue_port
        self.cert, self.key, self.oauth, self.host = cert, key, oauth, host
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_dir = Path(tempfile.mkdtemp(prefix="rolecall-azurite-"))
        self.log_path = self._log_dir / "azurite.log"

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Azurite:
        args = [
            *find_azurite(),
            "--silent",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--blobHost", self.host, "--blobPort", str(self.blob_port),
            "--queueHost", self.host, "--queuePort", str(self.queue_port),
            "--tableHost", self.host, "--tablePort", "0",
        ]  # fmt: skip
        if self.location is None:
            args.append("--inMemoryPersistence")
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        if self.cert and self.key:
            args += ["--cert", str(self.cert), "--key", str(self.key)]
        if self.oauth:
            args += ["--oauth", "basic"]
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=sys.platform != "win32",
            creationflags=_NEW_GROUP_FLAGS,
        )
        log.close()
        self._await_listening(timeout)
        return self

    def _await_listening(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            urls = dict(_LISTENING.findall(text))
            if "Blob" in urls and "Queue" in urls:
                self.blob_port = int(urls["Blob"].rsplit(":", 1)[1].rstrip("/"))
                self.queue_port = int(urls["Queue"].rsplit(":", 1)[1].rstrip("/"))
                if _answers(self.host, self.blob_port) and _answers(self.host, self.queue_port):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        output = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise ConfigError(f"Azurite did not start listening within {timeout:.0f}s:\n{output}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Azurite flushes its metadata), then SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, graceful=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc, graceful=False)
            proc.wait(timeout)

    def restart(self) -> None:
        """Graceful restart on the same ports and location (data survives on disk)."""
        self.stop()
        self.start()

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self._log_dir, ignore_errors=True)

    # --- addresses ---------------------------------------------------------------------

    @property
    def scheme(self) -> str:
        return "https" if self.cert else "http"

    @property
    def blob_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.blob_port}/{ACCOUNT}"

    @property
    def queue_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.queue_port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return connection_string(self.blob_url, self.queue_url)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_NEW_GROUP_FLAGS: int = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)


def _signal_group(proc: subprocess.Popen[bytes], *, graceful: bool) -> None:
    try:
        if sys.platform == "win32":
            if graceful:
                proc.send_signal(signal.CTRL_BREAK_EVENT)
            else:
                proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGTERM if graceful else signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass
