"""The distribution: one import package on every instance, and no development tooling in it.

A wheel that installed ``schemas`` or ``storage`` at the top level would break, or be broken
by, any other distribution with a module of that name. Instances also have no use for the
Azurite launcher, the demo or the simulator, so the wheel leaves ``rolecall.devtools`` out.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(REPO)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    (found,) = out.glob("rolecall-*.whl")
    return found


def test_the_wheel_has_one_top_level_package_and_no_devtools(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"rolecall"}
    for sub in ("schemas", "storage", "worker", "controller"):
        assert f"rolecall/{sub}/__init__.py" in names
    assert not [n for n in names if n.startswith("rolecall/devtools")]
    # the PowerShell wrapper every .ps1 job runs through on Windows (worker/commands.py)
    assert "rolecall/worker/run-script.ps1" in names
    # the dashboard's templates and assets are served from the package, never fetched
    for served in (
        "templates/base.html",
        "templates/_run.html",
        "static/live.js",
        "static/style.css",
    ):
        assert f"rolecall/controller/web/{served}" in names


def test_installing_it_into_an_empty_venv_adds_only_rolecall(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env)
    py = env / "bin" / "python"
    site = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    before = {p.name for p in Path(site).iterdir()}
    subprocess.run(
        [py, "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    added = {p.name for p in Path(site).iterdir()} - before
    packages = {n for n in added if not n.endswith(".dist-info") and not n.startswith("__")}
    assert packages == {"rolecall"}


def test_the_agent_never_imports_the_development_tools_nor_the_web_or_telemetry_ones() -> None:
    # the web stack is the controller's `web` extra, OpenTelemetry the `otel` one, imported
    # only when an exporter is configured (rolecall/telemetry.py): an instance carries neither
    probe = (
        "import sys, rolecall.worker.agent, rolecall.worker.cli, rolecall.worker.check\n"
        "import rolecall.telemetry\n"
        "heavy = ('rolecall.controller.web', 'starlette', 'jinja2', 'uvicorn',\n"
        "         'prometheus_client', 'opentelemetry', 'azure.monitor')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('rolecall.devtools', *heavy))\n"
        "             or m.split('.')[0] in ('schemas', 'storage', 'worker', 'controller'))\n"
        "import rolecall.cli  # the root command `rolecall worker` starts from (a checkout's\n"
        "bad += sorted(m for m in sys.modules if m.startswith(heavy))  # adds devtools)\n"
        "print(bad)\n"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"
