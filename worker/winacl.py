"""Who may write the agent's state on Windows, and what the agent does about it at start.

The agent runs as SYSTEM and trusts its state directory: job markers turn a re-delivery into
a re-report, the payload cache holds scripts it runs. The default state directory is under
``%ProgramData%``, where ordinary users may create folders and files: a user who creates
``rolecall\\state\\cache\\<digest>.ps1`` before the agent does gets it run as SYSTEM, and one
who writes a marker fakes a job's result. ``chmod 0700`` is what protects this on Linux; on
Windows the agent sets a *protected* DACL itself (SYSTEM and Administrators, full control,
inherited by everything below, nothing inherited from above), and at start checks who owns
what is already there: an owner may always rewrite an object's DACL, so a file owned by
someone else is removed (a marker or a cached payload costs a re-run or a re-download), and a
state directory owned by someone else is refused.

The decisions are pure functions of SIDs and ACEs, tested on Linux; reading and writing
security descriptors is thin pywin32 calls below them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rolecall.schemas.errors import ConfigError

SYSTEM = "S-1-5-18"
ADMINISTRATORS = "S-1-5-32-544"
TRUSTED_INSTALLER = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
TRUSTED_OWNERS = frozenset({SYSTEM, ADMINISTRATORS, TRUSTED_INSTALLER})
#: the protected DACL the agent puts on its state directory, as SDDL: SYSTEM and
#: Administrators full control, inherited by files (OI) and folders (CI); "P" = protected
STATE_SDDL = f"D:P(A;OICI;FA;;;{SYSTEM})(A;OICI;FA;;;{ADMINISTRATORS})"

#: access bits that let a trustee change a file or folder's content or protection
FILE_WRITE_BITS = (
    0x0002  # FILE_WRITE_DATA / FILE_ADD_FILE
    | 0x0004  # FILE_APPEND_DATA / FILE_ADD_SUBDIRECTORY
    | 0x0040  # FILE_DELETE_CHILD
    | 0x00010000  # DELETE
    | 0x00040000  # WRITE_DAC
    | 0x00080000  # WRITE_OWNER
    | 0x10000000  # GENERIC_ALL
    | 0x40000000  # GENERIC_WRITE
)
ACCESS_ALLOWED = 0


@dataclass(frozen=True)
class Ace:
    sid: str
    mask: int
    kind: int = ACCESS_ALLOWED


def untrusted_writers(aces: Iterable[Ace]) -> list[str]:
    """SIDs other than SYSTEM, Administrators and TrustedInstaller that may write."""
    return sorted(
        {
            a.sid
            for a in aces
            if a.kind == ACCESS_ALLOWED and a.mask & FILE_WRITE_BITS and a.sid not in TRUSTED_OWNERS
        }
    )


def write_access_problem(path: str, owner: str, aces: Iterable[Ace]) -> str | None:
    """Why the agent (SYSTEM) must not trust what is in ``path``, or None: its owner, or a
    trustee its DACL lets write, is someone other than SYSTEM and Administrators."""
    if owner not in TRUSTED_OWNERS:
        return (
            f"{path} is owned by {owner}, not SYSTEM or Administrators: its owner could have "
            "put anything there; remove it or give it to Administrators"
        )
    writers = untrusted_writers(aces)
    if writers:
        return f"{path} can be written by {', '.join(writers)}, not only SYSTEM and Administrators"
    return None


def untrusted_files(owners: Iterable[tuple[Path, str]]) -> list[Path]:
    """The entries, of (path, owner SID) pairs, that someone other than the agent's
    trusted owners owns."""
    return [p for p, owner in owners if owner not in TRUSTED_OWNERS]


# --- the thin calls (pywin32's win32security) -----------------------------------------------


def protect(path: Path) -> None:
    """Give ``path`` the state directory's protected DACL (inherited below it)."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import pywintypes

    try:
        _set_dacl(path)
    except pywintypes.error as e:  # pywin32's errors are not OSErrors
        raise OSError(e.winerror, e.strerror, str(path)) from e


def _set_dacl(path: Path) -> None:
    if sys.platform != "win32":
        raise OSError("Windows only")
    import win32security

    sd = win32security.ConvertStringSecurityDescriptorToSecurityDescriptor(
        STATE_SDDL, win32security.SDDL_REVISION_1
    )
    win32security.SetNamedSecurityInfo(
        str(path),
        win32security.SE_FILE_OBJECT,
        win32security.DACL_SECURITY_INFORMATION | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
        None,
        None,
        sd.GetSecurityDescriptorDacl(),
        None,
    )


def owner_and_aces(path: Path) -> tuple[str, list[Ace]]:
    """The owner's SID and the DACL's entries; OSError if they cannot be read."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import pywintypes

    try:
        return _read_security(path)
    except pywintypes.error as e:
        raise OSError(e.winerror, e.strerror, str(path)) from e


def _read_security(path: Path) -> tuple[str, list[Ace]]:
    if sys.platform != "win32":
        raise OSError("Windows only")
    import win32security

    sd = win32security.GetNamedSecurityInfo(
        str(path),
        win32security.SE_FILE_OBJECT,
        win32security.OWNER_SECURITY_INFORMATION | win32security.DACL_SECURITY_INFORMATION,
    )
    owner = win32security.ConvertSidToStringSid(sd.GetSecurityDescriptorOwner())
    dacl = sd.GetSecurityDescriptorDacl()
    aces = []
    for i in range(dacl.GetAceCount() if dacl is not None else 0):
        (kind, _flags), mask, sid = dacl.GetAce(i)[:3]
        aces.append(Ace(win32security.ConvertSidToStringSid(sid), mask, kind))
    return owner, aces


def secure_state_dir(root: Path) -> list[Path]:
    """At agent start on Windows: refuse a state directory someone else owns, set its
    protected DACL, and remove the files below it that someone else owns. Returns them."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        owner, _ = owner_and_aces(root)
        # its DACL is about to be replaced: only the owner, who could change it back, matters
        problem = write_access_problem(f"state directory {root}", owner, [])
        if problem is not None:
            raise ConfigError(problem)
        protect(root)
    except OSError as e:
        raise ConfigError(f"cannot protect the state directory {root}: {e}") from e
    planted = untrusted_files(_owners(root))
    for path in planted:
        path.unlink(missing_ok=True) if path.is_file() else _remove_tree(path)
    return planted


def _owners(root: Path) -> Iterator[tuple[Path, str]]:
    for path in root.rglob("*"):
        try:
            yield path, owner_and_aces(path)[0]
        except FileNotFoundError:
            continue
        except OSError:
            # its owner may deny even SYSTEM a look; deleting it needs only the parent's
            # FILE_DELETE_CHILD, which the protected DACL gives SYSTEM
            yield path, "unreadable"


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
