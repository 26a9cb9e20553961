"""Publishing agent releases, finding them for a baseline's pin, and listing them.

A release is published once per version and never changes: its wheels are content-addressed
payloads, and its document is written create-only, because baselines pin the document's
SHA-256 (schemas/agents.py). Publishing the same wheels again (a retry after a network error)
is a no-op; publishing other wheels under a published version is refused.

The version is read from inside the rolecall wheel, not only from its file name: what an
agent reports, and what a pin is compared with, is ``rolecall.__version__``.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rolecall.controller.payloads import publish_bytes
from rolecall.controller.published import PublishedPayloads
from rolecall.schemas.agents import AgentPin, AgentRelease
from rolecall.schemas.base import utcnow
from rolecall.schemas.baseline import Baseline
from rolecall.schemas.codec import decode_document, encode_document
from rolecall.schemas.errors import ConcurrencyConflict, ConfigError, ContractError, NotFound
from rolecall.schemas.jobs import PayloadKind
from rolecall.schemas.names import Names, check_agent_version
from rolecall.schemas.version import Version
from rolecall.storage.clients import Storage

#: The first contract whose agents follow a baseline's agent pin: a release that speaks less
#: could never read the baseline that pins it.
PINNABLE = Version(1, 3)

_WHEEL_NAME = re.compile(r"^[A-Za-z0-9_.+!-]+\.whl$")
_VERSION_LINE = re.compile(r"""^__version__ = ["']([^"']+)["']""", re.M)
_CONTRACT_LINE = re.compile(r"^CONTRACT = Version\((\d+), (\d+)\)", re.M)


@dataclass(frozen=True)
class Published:
    """A release as stored, with the digest a baseline pins."""

    release: AgentRelease
    sha256: str

    @property
    def pin(self) -> AgentPin:
        return AgentPin(version=self.release.version, release_sha256=self.sha256)


def agent_wheel_facts(wheel: Path) -> tuple[str, Version]:
    """(``rolecall.__version__``, the contract it speaks) read from inside a rolecall wheel."""
    try:
        with zipfile.ZipFile(wheel) as z:
            init = z.read("rolecall/__init__.py").decode()
            contract = z.read("rolecall/schemas/version.py").decode()
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{wheel.name} is not a rolecall agent wheel: {e}") from e
    version, speaks = _VERSION_LINE.search(init), _CONTRACT_LINE.search(contract)
    if version is None or speaks is None:
        raise ConfigError(f"{wheel.name}: cannot tell its version or the contract it speaks")
    return version.group(1), Version(int(speaks.group(1)), int(speaks.group(2)))


def _wheels(wheeldir: Path, version: str) -> tuple[list[Path], Version]:
    """The wheels to publish, after checking that the rolecall one is ``version``."""
    wheels = sorted(wheeldir.glob("*.whl")) if wheeldir.is_dir() else []
    if not wheels:
        raise ConfigError(f"no wheels (*.whl) in {wheeldir}")
    bad = [w.name for w in wheels if not _WHEEL_NAME.fullmatch(w.name)]
    if bad:
        raise ConfigError(f"not a wheel file name: {bad[0]}")
    ours = [w for w in wheels if w.name.split("-")[0].lower() == "rolecall"]
    if len(ours) != 1:
        raise ConfigError(f"{wheeldir} must hold exactly one rolecall wheel, not {len(ours)}")
    found, speaks = agent_wheel_facts(ours[0])
    if found != version:
        raise ConfigError(f"{ours[0].name} is rolecall {found}, not {version}")
    if speaks < PINNABLE:
        raise ConfigError(
            f"rolecall {found} speaks contract {speaks}; agents before contract {PINNABLE} "
            "cannot follow a baseline's agent pin (rebake them once: docs/deploy.md)"
        )
    return wheels, speaks


def publish_release(
    storage: Storage,
    wheeldir: Path,
    version: str,
    *,
    issuer: str = "rolecall",
    sign: Callable[[AgentRelease], AgentRelease] = lambda r: r,
    published: PublishedPayloads | None = None,
) -> tuple[Published, bool]:
    """Upload every wheel in ``wheeldir`` and write the release; (release, newly written)."""
    check_agent_version(version)
    wheels, speaks = _wheels(wheeldir, version)
    refs = [
        publish_bytes(storage, w.read_bytes(), w.name, PayloadKind.ARCHIVE, published)
        for w in wheels
    ]
    release = sign(
        AgentRelease(version=version, contract=str(speaks), wheels=refs,
                     published_at=utcnow(), issuer=issuer)
    )  # fmt: skip
    data = encode_document(release)
    container, path = storage.names.payloads_container, Names.agent_release_blob(version)
    try:
        storage.put_blob(container, path, data, create_only=True, content_type="application/json")
    except ConcurrencyConflict:
        existing = find_release(storage, version)
        if {w.sha256 for w in existing.release.wheels} != {r.sha256 for r in refs}:
            raise ConfigError(
                f"agent {version} was published with other wheels on "
                f"{existing.release.published_at:%Y-%m-%d %H:%M}Z; a version is published "
                "once: publish these under a new version"
            ) from None
        return existing, False
    return Published(release, hashlib.sha256(data).hexdigest()), True


def find_release(storage: Storage, version: str) -> Published:
    """The published release of ``version``; ConfigError (one line) if there is none."""
    container, path = storage.names.payloads_container, Names.agent_release_blob(version)
    try:
        raw = storage.get_blob(container, path).data
    except NotFound:
        raise ConfigError(
            f"agent {version} is not published; publish it first with "
            f"`rolecall agent publish WHEELDIR --version {version}`"
        ) from None
    return Published(decode_document(raw, AgentRelease), hashlib.sha256(raw).hexdigest())


def list_releases(storage: Storage) -> list[Published]:
    """Every published release, oldest first."""
    try:
        items = storage.list_blobs(storage.names.payloads_container, Names.agents_prefix())
    except NotFound:
        return []
    versions = [v for i in items if (v := Names.agent_version_of_blob(i.name)) is not None]
    found = [find_release(storage, v) for v in versions]
    return sorted(found, key=lambda p: p.release.published_at)


def pins(storage: Storage) -> dict[str, tuple[int, AgentPin]]:
    """Role -> (baseline version, its agent pin), for every role whose baseline pins one."""
    try:
        items = storage.list_blobs(storage.names.state_container, Names.baselines_prefix())
    except NotFound:
        return {}
    out: dict[str, tuple[int, AgentPin]] = {}
    for item in items:
        try:
            raw = storage.get_blob(storage.names.state_container, item.name).data
            baseline = decode_document(raw, Baseline)
        except (NotFound, ContractError):
            continue  # deleted meanwhile, or written by a newer controller: not ours to show
        if baseline.agent is not None:
            out[baseline.role] = (baseline.version, baseline.agent)
    return out
