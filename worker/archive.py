"""Safe extraction of zip and tar payloads.

Archives come from the payload store, but the agent runs as an administrator, so an archive
is treated as hostile until proven otherwise. Extraction refuses, before writing anything:
absolute paths and drive letters, ``..`` components, links whose target leaves the
extraction root, hard links, device files and FIFOs, more members than a cap, and a total
uncompressed size beyond a cap (zip bombs; the size is counted while streaming, because
declared sizes can lie).

It also refuses what the file system would refuse halfway through, so that no archive ends in
a bare ``OSError`` (or worse, ``RecursionError``) in the middle of extraction: a member that
is both a file and a directory (``a`` then ``a/b``, or ``a/b`` then ``a``), a name given
twice, a name component longer than the file systems allow, and paths nested deeper than any
real payload (path resolution recurses once per component). Names are compared case-blind
where the file system is (Windows, macOS), so ``A`` and ``a`` collide there as they would on
disk. Tar headers are read one at a time against the member cap, so a payload of a million
empty members is refused before its headers fill the agent's memory.
"""

from __future__ import annotations

import io
import lzma
import stat
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO

from rolecall.schemas.errors import HostileArchive

_CHUNK = 1 << 16
#: NAME_MAX on Linux and NTFS (in bytes on Linux; UTF-16 units on NTFS, never more than bytes)
MAX_COMPONENT_BYTES = 255
#: Deeper than any real payload, shallow enough that resolving a path cannot recurse too far.
MAX_DEPTH = 64
#: Well inside PATH_MAX (4,096) once the work directory's own path is added.
MAX_NAME_CHARS = 2048
_CASE_BLIND = sys.platform in ("win32", "darwin")


def safe_member_path(root: Path, name: str) -> Path:
    """Where ``name`` would land under ``root``; raises HostileArchive if it escapes."""
    clean = name.replace("\\", "/")
    p = PurePosixPath(clean)
    if len(clean) > MAX_NAME_CHARS:
        raise HostileArchive(f"archive member {name[:80]!r}… is over {MAX_NAME_CHARS} long")
    if len(p.parts) > MAX_DEPTH:
        raise HostileArchive(f"archive member {name[:80]!r}… is nested over {MAX_DEPTH} deep")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT_BYTES for part in p.parts):
        raise HostileArchive(
            f"archive member {name[:80]!r}… has a name over {MAX_COMPONENT_BYTES} bytes long"
        )
    if "\0" in clean:
        raise HostileArchive(f"archive member {name!r} has a NUL in its name")
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


class _Layout:
    """The tree the members would make, checked one member at a time before anything is
    written: a path is a directory, a file or a link, once."""

    def __init__(self) -> None:
        self.kinds: dict[tuple[str, ...], str] = {}

    def add(self, name: str, kind: str) -> None:
        parts = PurePosixPath(name.replace("\\", "/")).parts
        key = tuple(p.casefold() for p in parts) if _CASE_BLIND else parts
        if not key:
            if kind == "dir":
                return  # "./", as `tar -C dir .` writes it
            raise HostileArchive(f"archive member {name!r} names the extraction directory")
        for depth in range(1, len(key)):
            above = self.kinds.setdefault(key[:depth], "dir")
            if above != "dir":
                parent = "/".join(parts[:depth])
                raise HostileArchive(f"archive member {name!r} is under {parent!r}, a {above}")
        seen = self.kinds.get(key)
        if seen == kind == "dir":
            return
        if seen == kind:
            raise HostileArchive(f"archive member {name!r} appears twice")
        if seen is not None:
            raise HostileArchive(f"archive member {name!r} is both a {seen} and a {kind}")
        self.kinds[key] = kind


class _DiskError(Exception):
    """The local file system refused a write: this machine's refusal, not the archive's."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


#: How reading a corrupt archive fails: the modules' own errors, and the OSError, ValueError
#: and decompressor errors they let through (a zip whose member offset is negative raises
#: EINVAL from seek; a truncated tar.gz, zlib.error; an encrypted zip, RuntimeError).
_CORRUPT = (
    zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError, RuntimeError,
    NotImplementedError, zlib.error, lzma.LZMAError,
)  # fmt: skip


@contextmanager
def _writing() -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise _DiskError(e) from e


def _copy(src: IO[bytes], dest: Path, budget: _Budget) -> None:
    with _writing():
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = dest.open("wb")
    with out:
        while chunk := src.read(_CHUNK):
            budget.spend(len(chunk))
            with _writing():
                out.write(chunk)


def extract(archive: Path, dest: Path, *, max_bytes: int, max_members: int) -> None:
    """Extract ``archive`` (zip, tar, tar.gz/bz2/xz) into ``dest`` or refuse it whole.

    Raises HostileArchive for anything wrong with the archive, OSError only when the local
    file system refuses a write (the caller decides whose fault that is)."""
    dest.mkdir(parents=True, exist_ok=True)
    budget = _Budget(max_bytes, max_members)
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, budget)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, dest, budget)
        else:
            raise HostileArchive("payload is not a zip or tar archive")
    except _DiskError as e:
        raise e.error from None
    except _CORRUPT as e:
        raise HostileArchive(f"archive is corrupt: {type(e).__name__}: {e}") from e


def _extract_zip(archive: Path, dest: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        layout = _Layout()
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
            kind = "link" if stat.S_ISLNK(mode) else "dir" if info.is_dir() else "file"
            layout.add(info.filename, kind)
        links = []
        for info in infos:
            target = safe_member_path(dest, info.filename)
            mode = info.external_attr >> 16
            if info.is_dir():
                with _writing():
                    target.mkdir(parents=True, exist_ok=True)
            elif stat.S_ISLNK(mode):
                links.append((target, zf.read(info).decode("utf-8")))
            else:
                with zf.open(info) as src:
                    _copy(src, target, budget)
                if mode & 0o111:
                    with _writing():
                        target.chmod(0o700)
        _make_links(links)


def _extract_tar(archive: Path, dest: Path, budget: _Budget) -> None:
    with _open_tar(archive) as tf:
        members, layout = [], _Layout()
        for m in tf:  # one header at a time: the member cap bounds what is held
            budget.member()
            safe_member_path(dest, m.name)
            if m.issym():
                _check_link(dest, m.name, m.linkname)
            elif m.islnk():
                raise HostileArchive(f"archive member {m.name!r} is a hard link")
            elif not (m.isfile() or m.isdir()):
                raise HostileArchive(f"archive member {m.name!r} is a device, FIFO or special file")
            layout.add(m.name, "link" if m.issym() else "dir" if m.isdir() else "file")
            members.append(m)
        links = []
        for m in members:
            target = safe_member_path(dest, m.name)
            if m.isdir():
                with _writing():
                    target.mkdir(parents=True, exist_ok=True)
            elif m.issym():
                links.append((target, m.linkname))
            else:
                src = tf.extractfile(m)
                if src is None:
                    raise HostileArchive(f"archive member {m.name!r} has no data")
                _copy(src, target, budget)
                if m.mode & 0o111:
                    with _writing():
                        target.chmod(0o700)
        _make_links(links)


def _make_links(links: list[tuple[Path, str]]) -> None:
    for target, link in links:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(link)
        except FileExistsError as e:
            raise HostileArchive(f"archive link {target.name!r} collides with a file") from e
        except OSError as e:
            raise _DiskError(e) from e


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
