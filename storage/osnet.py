"""The operating system's own network settings: its certificate store, and on Windows the
machine proxy.

Corporate networks inspect TLS with their own root certificate, which they deploy to the
operating system's store, not to certifi's bundle inside our virtual environment: there,
every storage request fails certificate verification. ``tls_trust`` chooses: ``os``
verifies against the system store (truststore: CryptoAPI on Windows, OpenSSL's default
paths on Linux), ``bundled`` against certifi, and ``auto`` (the default) means ``os`` on
Windows and ``bundled`` elsewhere, as before.

A Windows service has no proxy environment variables and no user's Internet Options; the
machine's proxy is WinHTTP's (``netsh winhttp set proxy``, or group policy). When no proxy
variable is set, the agent reads it once at start and sets ``HTTPS_PROXY``/``HTTP_PROXY``/
``NO_PROXY`` for itself (and so for its jobs), with the instance metadata address always
bypassed.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from typing import Literal

TlsTrust = Literal["auto", "os", "bundled"]
#: Azure's instance metadata (and managed identity) address, on the instance's own link
INSTANCE_METADATA_HOST = "169.254.169.254"
#: instance metadata and the managed identity endpoint: never through a proxy
ALWAYS_DIRECT = (INSTANCE_METADATA_HOST, "localhost", "127.0.0.1")
_applied: set[str] = set()


def use_os_trust_store(mode: TlsTrust, platform: str = sys.platform) -> bool:
    return mode == "os" or (mode == "auto" and platform == "win32")


def parse_winhttp_proxy(proxy: str, bypass: str) -> dict[str, str]:
    """WinHTTP's proxy (``host:port``, or ``http=h:p;https=h:p``) and bypass list
    (``<local>;*.contoso.com``) as the proxy variables requests reads."""
    out: dict[str, str] = {}
    default = ""
    for entry in proxy.replace(" ", ";").split(";"):
        if not entry:
            continue
        scheme, _, address = entry.rpartition("=")
        address = address if "://" in address else f"http://{address}"
        if scheme.lower() in ("http", "https"):
            out[f"{scheme.upper()}_PROXY"] = address
        elif not scheme:
            default = address
    if default:
        out.setdefault("HTTP_PROXY", default)
        out.setdefault("HTTPS_PROXY", default)
    if not out:
        return {}
    direct = list(ALWAYS_DIRECT)
    for entry in bypass.replace(" ", ";").split(";"):
        if entry and entry != "<local>":
            direct.append(entry.removeprefix("*"))
    out["NO_PROXY"] = ",".join(dict.fromkeys(direct))
    return out


def apply_os_network_settings(tls_trust: TlsTrust) -> None:
    """Once per process: the system trust store if chosen, the WinHTTP proxy if no proxy
    variable is set."""
    if "done" in _applied:
        return
    _applied.add("done")
    if use_os_trust_store(tls_trust):
        import truststore

        truststore.inject_into_ssl()
    if sys.platform == "win32" and not urllib.request.getproxies():
        os.environ.update(parse_winhttp_proxy(*winhttp_proxy()))


def winhttp_proxy() -> tuple[str, str]:
    """(proxy, bypass) from WinHttpGetDefaultProxyConfiguration; empty when direct."""
    if sys.platform != "win32":
        raise OSError("Windows only")
    import ctypes
    from ctypes import wintypes

    class ProxyInfo(ctypes.Structure):
        _fields_ = [
            ("dwAccessType", wintypes.DWORD),
            ("lpszProxy", ctypes.c_void_p),
            ("lpszProxyBypass", ctypes.c_void_p),
        ]

    winhttp = ctypes.WinDLL("winhttp", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32")
    kernel32.GlobalFree.argtypes = [ctypes.c_void_p]
    info = ProxyInfo()
    if not winhttp.WinHttpGetDefaultProxyConfiguration(ctypes.byref(info)):
        return "", ""
    values = []
    for pointer in (info.lpszProxy, info.lpszProxyBypass):
        values.append(ctypes.wstring_at(pointer) if pointer else "")
        if pointer:
            kernel32.GlobalFree(pointer)
    return values[0], values[1]
