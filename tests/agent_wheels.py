"""Agent wheels for the self-update tests: real ones built from this checkout under another
version number, the dependency wheels an offline install needs, and small stand-ins.

* ``build_agent_wheel`` copies the package's sources (the four top-level folders that reach
  it through symlinks included), writes another ``__version__`` into the copy, optionally
  changes something else (a deliberately broken release), and builds the wheel as
  tests/test_package.py does (``pip wheel --no-deps --no-build-isolation``).
* ``dependency_wheels`` holds a wheel of every runtime dependency, at exactly the version this
  test environment runs, so an agent can ``pip install --no-index`` from a release as on a real
  instance. They are downloaded once (pip's own cache makes a repeat quick) into pytest's
  cache directory, keyed by the environment's package versions, and reused by later sessions.
* ``fake_agent_wheel`` is a zip with just what ``rolecall agent publish`` reads (the version
  and the contract): enough to test publishing, pinning and refusing, not to install.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("rolecall", "schemas", "storage", "worker", "controller")


def build_agent_wheel(
    out: Path, version: str, change: Callable[[Path], None] | None = None
) -> Path:
    """A wheel of this checkout that says it is rolecall ``version``."""
    tree = out / f"src-{version}"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, tree / name)
    ignore = shutil.ignore_patterns("__pycache__", "devtools")
    for name in SOURCES:
        shutil.copytree(REPO / name, tree / name, symlinks=True, ignore=ignore)
    init = tree / "rolecall" / "__init__.py"
    text, n = re.subn(r'^__version__ = ".*"$', f'__version__ = "{version}"', init.read_text(),
                      flags=re.M)  # fmt: skip
    assert n == 1, "rolecall/__init__.py no longer writes __version__ on one line"
    init.write_text(text)
    if change is not None:
        change(tree)
    dist = out / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(dist), str(tree)],
        check=True, capture_output=True, text=True, cwd=out,
    )  # fmt: skip
    (wheel,) = dist.glob(f"rolecall-{version}-*.whl")
    return wheel


def dependency_wheels(cache: Path, any_agent_wheel: Path) -> Path:
    """A directory with a wheel of every runtime dependency, pinned to this environment."""
    freeze = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    key = hashlib.sha256((freeze + sys.version).encode()).hexdigest()[:16]
    found = cache / key
    if (found / "complete").exists():
        return found
    shutil.rmtree(found, ignore_errors=True)
    found.mkdir(parents=True)
    constraints = found / "constraints.txt"
    constraints.write_text(freeze)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
         "-c", str(constraints), "-d", str(found), str(any_agent_wheel)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    for ours in found.glob("rolecall-*.whl"):
        ours.unlink()  # the agent's own wheel comes with each release
    (found / "complete").touch()
    return found


def fake_agent_wheel(out: Path, version: str, contract: tuple[int, int] = (1, 3)) -> Path:
    """What ``agent publish`` reads from a rolecall wheel, and nothing else."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"rolecall-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("rolecall/__init__.py", f'__version__ = "{version}"\n')
        z.writestr("rolecall/schemas/version.py",
                   f"CONTRACT = Version({contract[0]}, {contract[1]})\n")  # fmt: skip
    return path


def wheelhouse(out: Path, *wheels: Path) -> Path:
    """A WHEELDIR for ``rolecall agent publish``: these wheels, linked."""
    out.mkdir(parents=True, exist_ok=True)
    for w in wheels:
        (out / w.name).symlink_to(w)
    return out


def cache_dir(request: Any, fallback: Path) -> Path:
    """pytest's cache directory for dependency wheels (kept between sessions), if there is one."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return Path(cache.mkdir("agent-dependency-wheels")) if cache is not None else fallback


def install_agent(venv_dir: Path, wheel: Path, deps: Path) -> Path:
    """A venv with ``wheel`` installed offline from ``deps``, as an agent's upgrade installs
    one; returns its ``rolecall`` command."""
    venv.EnvBuilder(with_pip=True).create(venv_dir)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PIP_")}
    subprocess.run(
        [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
         "--find-links", str(deps), str(wheel)],
        check=True, capture_output=True, text=True, env={**env, "PIP_CONFIG_FILE": os.devnull},
    )  # fmt: skip
    return venv_dir / "bin" / "rolecall"
