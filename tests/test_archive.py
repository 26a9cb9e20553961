"""Safe extraction, without storage: hostile archives are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from rolecall.schemas.errors import HostileArchive
from rolecall.worker.archive import extract


def tar_of(tmp: Path, *members: tuple[str, bytes, dict[str, object]]) -> Path:
    path = tmp / "a.tar"
    with tarfile.open(path, "w") as tf:
        for name, data, attrs in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in attrs.items():
                setattr(info, k, v)
            tf.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return path


def do(path: Path, dest: Path, max_bytes: int = 10_000_000) -> None:
    extract(path, dest, max_bytes=max_bytes, max_members=100)


def test_a_plain_archive_extracts(tmp_path: Path) -> None:
    path = tar_of(tmp_path, ("dir/run.sh", b"echo hi", {"mode": 0o755}), ("x", b"1", {}))
    do(path, tmp_path / "out")
    assert (tmp_path / "out/dir/run.sh").read_bytes() == b"echo hi"


@pytest.mark.parametrize(
    "member",
    [
        ("../up", b"x", {}),
        ("a/../../up", b"x", {}),
        ("/abs", b"x", {}),
        ("C:/windows/evil", b"x", {}),
        ("..\\win", b"x", {}),
        ("l", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc"}),
        ("l", b"", {"type": tarfile.SYMTYPE, "linkname": "../x"}),
        ("h", b"", {"type": tarfile.LNKTYPE, "linkname": "x"}),
        ("d", b"", {"type": tarfile.CHRTYPE}),
        ("f", b"", {"type": tarfile.FIFOTYPE}),
    ],
    ids=str,
)
def test_hostile_members_are_refused_and_nothing_is_written(
    tmp_path: Path, member: tuple[str, bytes, dict[str, object]]
) -> None:
    path = tar_of(tmp_path, ("first", b"ok", {}), member)
    with pytest.raises(HostileArchive):
        do(path, tmp_path / "out")
    assert not (tmp_path / "out" / "first").exists(), "validated before writing"
    assert not (tmp_path / "up").exists()


def test_a_chain_of_inside_links_cannot_climb_out(tmp_path: Path) -> None:
    """``a -> .`` is harmless; ``b -> a/..`` would escape through it. Refused."""
    path = tar_of(
        tmp_path,
        ("a", b"", {"type": tarfile.SYMTYPE, "linkname": "."}),
        ("b", b"", {"type": tarfile.SYMTYPE, "linkname": "a/.."}),
    )
    with pytest.raises(HostileArchive):
        do(path, tmp_path / "out")


def test_links_that_stay_inside_are_kept(tmp_path: Path) -> None:
    path = tar_of(
        tmp_path,
        ("conf/app.ini", b"k=v", {}),
        ("current", b"", {"type": tarfile.SYMTYPE, "linkname": "conf"}),
    )
    do(path, tmp_path / "out")
    assert (tmp_path / "out/current/app.ini").read_bytes() == b"k=v"


def test_a_zip_bomb_is_stopped_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros", b"\0" * 5_000_000)
    with pytest.raises(HostileArchive, match="expands beyond"):
        do(path, tmp_path / "out", max_bytes=1_000_000)


def test_too_many_members(tmp_path: Path) -> None:
    path = tar_of(tmp_path, *[(f"f{i}", b"", {}) for i in range(101)])
    with pytest.raises(HostileArchive, match="more than"):
        do(path, tmp_path / "out")


def test_not_an_archive(tmp_path: Path) -> None:
    p = tmp_path / "x.zip"
    p.write_bytes(b"just text")
    with pytest.raises(HostileArchive):
        do(p, tmp_path / "out")
