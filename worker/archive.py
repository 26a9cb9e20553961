"""Safe extraction of zip and tar payloads.

Archives come from the payload store, but the agent runs as an administrator, so an archive
is treated as hostile until proven otherwise. Extraction refuses, before writing anything:
absolute paths and drive letters, ``..`` components, links whose target leaves the
extraction root, hard links, device files and FIFOs, more members than a cap, and a total
uncompressed size beyond a cap (zip bombs; the size is counted while streaming, because
declared sizes can lie).
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from rolecall.schemas.errors import HostileArchive

_CHUNK = 1 << 16


def safe_member_path(root: Path, name: str) -> Path:
    """Where ``name`` would land under ``root``; raises HostileArchive if it escapes."""
    clean = name.replace("\\", "/")
    p = PurePosixPath(clean)
    if (
        not clean
        or clean.startswith("/")
        or p.is_absolute()
        or (len(clean) > 1 and clean[1] == ":")
        or ".." in p.parts
    ):
        raise HostileArchive(f"archive member {name!r} would escape the extraction directory")
    target = (root / Path(*p.parts)).resolve() if p.parts else root.resolve()
    if root.resolve() not in (target, *target.parents):
        raise HostileArchive(f"archive member {name!r} would escape the extraction directory")
    return target


class _Budget:
    def __init__(self, max_bytes: int, max_members: int) -> None:
        self.bytes_left, self.members_left = max_bytes, max_members
        self.max_bytes, self.max_members = max_bytes, max_members

    def member(self) -> None:
        self.members_left -= 1
        if self.members_left < 0:
            raise HostileArchive(f"archive has more than {self.max_members:,} members")

    def spend(self, n: int) -> None:
        self.bytes_left -= n
        if self.bytes_left < 0:
            raise HostileArchive(f"archive expands beyond {self.max_bytes:,} bytes")


def _copy(src: IO[bytes], dest: Path, budget: _Budget) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("wb") as out:
        while chunk := src.read(_CHUNK):
            budget.spend(len(chunk))
            out.write(chunk)


def extract(archive: Path, dest: Path, *, max_bytes: int, max_members: int) -> None:
    """Extract ``archive`` (zip, tar, tar.gz/bz2/xz) into ``dest`` or refuse it whole."""
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(max_bytes, max_members)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, budget)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest, budget)
        else:
            raise HostileArchive("payload is not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, UnicodeDecodeError) as e:
        raise HostileArchive(f"archive is corrupt: {e}") from e


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # validate everything before writing anything
            budget.member()
            safe_member_path(dest, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", "replace")
                _check_link(dest, info.filename, link)
            elif stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                # zip writers often leave the type bits unset for plain files
                raise HostileArchive(f"archive member {info.filename!r} is a special file")
        links = []
        for info in infos:
            target = safe_member_path(dest, info.filename)
            mode = info.external_attr >> 16
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif stat.S_ISLNK(mode):
                links.append((target, zf.read(info).decode("utf-8")))
            else:
                with zf.open(info) as src:
                    _copy(src, target, budget)
                if mode & 0o111:
                    target.chmod(0o700)
        _make_links(links)


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    with _open_tar(archive) as tf:
        members = tf.getmembers()
        for m in members:
            budget.member()
            safe_member_path(dest, m.name)
            if m.issym():
                _check_link(dest, m.name, m.linkname)
            elif m.islnk():
                raise HostileArchive(f"archive member {m.name!r} is a hard link")
            elif not (m.isfile() or m.isdir()):
                raise HostileArchive(f"archive member {m.name!r} is a device, FIFO or special file")
        links = []
        for m in members:
            target = safe_member_path(dest, m.name)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif m.issym():
                links.append((target, m.linkname))
            else:
                src = tf.extractfile(m)
                if src is None:
                    raise HostileArchive(f"archive member {m.name!r} has no data")
                _copy(src, target, budget)
                if m.mode & 0o111:
                    target.chmod(0o700)
        _make_links(links)


def _make_links(links: list[tuple[Path, str]]) -> None:
    for target, link in links:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.symlink_to(link)
        except FileExistsError as e:
            raise HostileArchive(f"archive link {target.name!r} collides with a file") from e


@contextmanager
def _open_tar(archive: Path) -> Iterator[tarfile.TarFile]:
    with archive.open("rb") as raw, tarfile.open(fileobj=io.BufferedReader(raw), mode="r:*") as tf:
        yield tf


def _check_link(root: Path, name: str, link: str) -> None:
    """A link may only descend: relative, without ``..``. Links are created after every
    file, so no file is written through one, and a chain of descending links cannot climb
    out of the root (a lexical check alone would miss ``a -> .`` then ``b -> a/..``)."""
    parts = PurePosixPath(link.replace("\\", "/")).parts
    if (
        not link
        or link.startswith(("/", "\\"))
        or (len(link) > 1 and link[1] == ":")
        or ".." in parts
    ):
        raise HostileArchive(f"archive link {name!r} -> {link!r} points outside")
    safe_member_path(root, name)
