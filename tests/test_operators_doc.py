"""Every example in docs/operators.md, run in order against Azurite as an operator would type
them: the guide cannot promise what the commands do not do.

Each ``sh`` line runs in bash from a working directory holding the files the guide names
(rotate.sh, flaky.sh, web/baseline.yaml from the guide's own YAML block and the files it
refers to, a dist/ with a stand-in agent wheel). A line exits 0 unless its comment says
``exits N``; ``VAR=$(...)`` lines keep their output for the lines after them, and ``export
VAR=VALUE`` sets VAR for them; a line ending in ``&`` runs in the background for the rest of
the guide (a worker is waited for until it reads live). The guide's namespace is the
default, ``rc``: this test is the only one that uses it.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from rolecall.controller.fleet import list_instances
from rolecall.devtools.azurite import Azurite
from rolecall.devtools.waiting import wait_for
from rolecall.schemas.base import utcnow
from rolecall.schemas.settings import StorageSettings
from rolecall.storage.clients import Storage
from tests.agent_wheels import fake_agent_wheel

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "operators.md"
ASSIGNMENT = re.compile(r"^([A-Z_]+)=\$\((.*)\)\s*(#.*)?$")
EXPORT = re.compile(r"^export ([A-Z_]+)=(\S+)\s*(#.*)?$")


@dataclass(frozen=True)
class Example:
    line: str
    exits: int


def guide() -> tuple[str, list[Example]]:
    """The guide's baseline YAML and its shell lines, in order."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", GUIDE.read_text(), re.S)
    yaml = next(body for lang, body in blocks if lang == "yaml")
    lines = [
        Example(raw.strip(), int(m.group(1)) if (m := re.search(r"#.*\bexits (\d)", raw)) else 0)
        for lang, body in blocks
        if lang == "sh"
        for raw in body.splitlines()
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    return yaml, lines


def workdir(root: Path, yaml: str) -> Path:
    """The files the guide's examples name."""
    (root / "web").mkdir(parents=True)
    (root / "web" / "baseline.yaml").write_text(yaml)
    (root / "web" / "install-packages.sh").write_text("#!/bin/sh\necho packages installed\n")
    deploy = b'#!/bin/sh\n[ "$SITE" = blue ] && [ -n "$TOKEN" ] && echo "site $SITE deployed"\n'
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("deploy.sh")
        info.size, info.mode = len(deploy), 0o755
        tar.addfile(info, io.BytesIO(deploy))
    (root / "web" / "site.tar.gz").write_bytes(buf.getvalue())
    (root / "rotate.sh").write_text("#!/bin/sh\necho rotated on $ROLECALL_INSTANCE\n")
    fake_agent_wheel(root / "dist", "0.3.0")  # what `agent publish` reads; never installed
    once = root / "flaky-failed-once"
    (root / "flaky.sh").write_text(
        "#!/bin/sh\n"
        f'if [ "$ROLECALL_INSTANCE" = web-1 ] && [ ! -e {once} ]; then\n'
        f"  touch {once}; echo 'disk full' >&2; exit 1\nfi\necho fixed\n"
    )
    return root


def test_every_example_in_the_operators_guide_runs(azurite: Azurite, tmp_path: Path) -> None:
    yaml, examples = guide()
    cwd = workdir(tmp_path / "ops", yaml)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROLECALL_", "AZURE_"))}
    env.update(
        AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
        ROLECALL_CACHE_DIR=str(tmp_path / "operator-cache"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    storage = Storage(StorageSettings(connection_string=azurite.connection_string))
    assert not list_instances(storage), "namespace rc must be this test's alone"
    shell_vars: dict[str, str] = {}
    background: list[subprocess.Popen[bytes]] = []
    try:
        for ex in examples:
            code = re.sub(r"\s+#.*$", "", ex.line)
            if exported := EXPORT.match(ex.line):
                shell_vars[exported.group(1)] = exported.group(2)
                continue
            if code.endswith("&"):
                background.append(start(code[:-1], cwd, {**env, **shell_vars}, tmp_path))
                if m := re.search(r"--instance (\S+)", ex.line):
                    name = m.group(1)
                    wait_for(lambda: live(storage, name), timeout=60, what=f"{name} live")
                continue
            run(ex, cwd, {**env, **shell_vars}, shell_vars)
    finally:
        for p in background:
            p.terminate()
            p.wait(60)
        storage.close()


def start(line: str, cwd: Path, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"bg-{len(list(logs.glob('bg-*')))}.log").open("wb")
    return subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=cwd, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip


def live(storage: Storage, instance: str) -> bool:
    return any(s.instance == instance and s.live(utcnow()) for s in list_instances(storage))


def run(ex: Example, cwd: Path, env: dict[str, str], shell_vars: dict[str, str]) -> None:
    assigned = ASSIGNMENT.match(ex.line)
    command = assigned.group(2) if assigned else ex.line
    r = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=180, check=False)  # fmt: skip
    said = f"{ex.line}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    assert r.returncode == ex.exits, said
    assert "Traceback" not in r.stderr, said
    if ex.exits == 2:
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error: "), said
    if " -o json" in command and "|" not in command:
        json.loads(r.stdout)
    if assigned:
        shell_vars[assigned.group(1)] = r.stdout.strip()
