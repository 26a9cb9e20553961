"""The environment a job starts with.

The agent's own environment minus its credentials, computed once. On Windows that is not
enough: the agent's environment is the one the service started with, and a step that
installs software and extends the machine PATH (most installers do) would be invisible to
every later step until a reboot. So on Windows each job gets the machine and user variables
read fresh from the registry, merged as Windows merges them for a new logon (machine
variables, then the user's, PATH the machine's followed by the user's, ``%VAR%`` references
expanded), over the agent's own. On Linux nothing is read per job: there is no registry,
and /etc/environment is not the agent's to re-read.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

#: Environment the agent must not hand to jobs: its own storage credentials.
PRIVATE_ENV_PREFIXES = ("ROLECALL_", "AZURE_STORAGE_", "AZURE_CLIENT_SECRET")
MACHINE_KEY = r"SYSTEM\CurrentControlSet\Control\Session Manager\Environment"
USER_KEY = "Environment"

#: a registry variable: its value, and whether it is REG_EXPAND_SZ
RegistryVars = Mapping[str, tuple[str, bool]]


def base_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The agent's environment minus its own credentials; computed once per agent."""
    return {k: v for k, v in environ.items() if not k.upper().startswith(PRIVATE_ENV_PREFIXES)}


def fresh_environment(
    base: Mapping[str, str], machine: RegistryVars, user: RegistryVars
) -> dict[str, str]:
    """Windows' environment for a new process: ``base`` overlaid with the machine's then
    the user's registry variables. Names are case-insensitive (``Path`` is ``PATH``); the
    user's PATH is appended to the machine's; credentials never enter."""
    merged: dict[str, tuple[str, str]] = {k.upper(): (k, v) for k, v in base.items()}
    for layer in (machine, user):
        # as Windows builds a logon's block: plain values first, then the expandable ones,
        # so %ProgramFiles% in Path finds ProgramFiles whatever the registry's order
        ordered = sorted(layer.items(), key=lambda item: item[1][1])
        for name, (value, expand) in ordered:
            if name.upper().startswith(PRIVATE_ENV_PREFIXES):
                continue
            text = expand_vars(value, merged) if expand else value
            if name.upper() == "PATH" and layer is user and "PATH" in merged:
                text = f"{merged['PATH'][1].rstrip(';')};{text}"
            merged[name.upper()] = (name, text)
    return dict(merged.values())


def expand_vars(value: str, env: Mapping[str, tuple[str, str]]) -> str:
    """``%NAME%`` as ExpandEnvironmentStrings expands it: unknown names stay as written."""

    def one(m: re.Match[str]) -> str:
        found = env.get(m.group(1).upper())
        return found[1] if found is not None else m.group(0)

    return re.sub(r"%([^%=]+)%", one, value)


class JobEnvironment:
    """The base every job's environment starts from (the job's own variables go on top)."""

    def __init__(self, fresh_from_registry: bool = sys.platform == "win32") -> None:
        self.base = base_environment()
        self.fresh = fresh_from_registry

    def current(self) -> dict[str, str]:
        if not self.fresh:
            return dict(self.base)
        return fresh_environment(self.base, *read_registry_environment())


def read_registry_environment() -> tuple[dict[str, tuple[str, bool]], dict[str, tuple[str, bool]]]:
    """The machine's and the agent's user's variables, as stored (one registry read each)."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import winreg

    def read(root: int, path: str) -> dict[str, tuple[str, bool]]:
        out: dict[str, tuple[str, bool]] = {}
        try:
            key = winreg.OpenKey(root, path)
        except OSError:
            return out
        with key:
            index = 0
            while True:
                try:
                    name, value, kind = winreg.EnumValue(key, index)
                except OSError:
                    return out
                index += 1
                if kind in (winreg.REG_SZ, winreg.REG_EXPAND_SZ) and isinstance(value, str):
                    out[name] = (value, kind == winreg.REG_EXPAND_SZ)

    return (
        read(winreg.HKEY_LOCAL_MACHINE, MACHINE_KEY),
        read(winreg.HKEY_CURRENT_USER, USER_KEY),
    )
