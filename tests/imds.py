"""A local stand-in for Azure Instance Metadata and the managed-identity token endpoint.

Tests point ``--imds-endpoint`` and ``IDENTITY_ENDPOINT`` here: nothing ever talks to
Azure's link-local metadata address. Tokens are JWT-shaped with the claims Azurite checks (``aud``, ``iss``,
``nbf``/``exp``); Azurite does not check the signature.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

IDENTITY_HEADER = "local-test-identity-header"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(lifetime_s: int = 3600, audience: str = "https://storage.azure.com") -> str:
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime_s,
        "oid": "11111111-1111-1111-1111-111111111111",
        "tid": "00000000-0000-0000-0000-000000000000",
    }
    header = {"alg": "RS256", "typ": "JWT"}
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(claims).encode()),
            b64url(b"not-checked-by-azurite"),
        ]
    )


class FakeMetadata:
    def __init__(self, vm_name: str = "vm-7", role_tag: str | None = "web") -> None:
        self.vm_name, self.role_tag = vm_name, role_tag
        self.token_lifetime_s = 3600
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                url = urlsplit(self.path)
                if url.path == "/metadata/instance/compute":
                    if self.headers.get("Metadata") != "true":
                        return self._send(400, {"error": "Metadata header required"})
                    tags = (
                        [{"name": "rolecall-role", "value": outer.role_tag}]
                        if outer.role_tag
                        else []
                    )
                    return self._send(200, {"name": outer.vm_name, "tagsList": tags})
                if url.path == "/msi/token":
                    if self.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
                        return self._send(401, {"error": "bad identity header"})
                    resource = parse_qs(url.query).get("resource", ["https://storage.azure.com"])[0]
                    exp = int(time.time()) + outer.token_lifetime_s
                    return self._send(
                        200,
                        {
                            "access_token": jwt(outer.token_lifetime_s, resource.rstrip("/")),
                            "expires_on": str(exp),
                            "resource": resource,
                            "token_type": "Bearer",
                        },
                    )
                self._send(404, {"error": "not found"})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def identity_env(self) -> dict[str, str]:
        """What App Service-style managed identity reads; DefaultAzureCredential finds it."""
        return {"IDENTITY_ENDPOINT": f"{self.url}/msi/token", "IDENTITY_HEADER": IDENTITY_HEADER}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
