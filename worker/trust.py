"""Checking signatures on jobs and baselines before anything runs.

With trusted keys configured, a job or baseline must carry a valid Ed25519 signature by one of
them (several keys may be trusted at once, which is how keys are rotated); the completion
reports which key signed. Unsigned, forged or altered documents raise SignatureError and are
poisoned with that reason.

Without a trusted key the agent refuses to start, unless told ``--accept-unsigned``
(``ROLECALL_ACCEPT_UNSIGNED``): then every job is accepted unsigned, which is for development
only (docs/security.md), and the agent says so at start and in its instance record.
"""

from __future__ import annotations

from collections.abc import Callable

from rolecall.schemas.errors import ConfigError
from rolecall.schemas.signing import TrustedKeys  # shared with the controller
from rolecall.worker.config import WorkerSettings

Verify = Callable[[str | bytes, bool], str | None]


#: the one line an agent without a trusted key, and not told to accept unsigned work, says
NO_TRUSTED_KEY = (
    "no trusted key: give --trusted-key FILE.pub (ROLECALL_TRUSTED_KEYS) with the public half "
    "of the controller's signing key (`rolecall keys generate --out FILE`), or "
    "--accept-unsigned (ROLECALL_ACCEPT_UNSIGNED=1) to run unsigned jobs (development only)"
)

#: what an agent told ``--accept-unsigned`` says at start
UNSIGNED_WARNING = (
    "no trusted key, --accept-unsigned: running unsigned jobs and baselines (development "
    "only: anyone who can write to this role's queues runs code here)"
)


def trust_summary(settings: WorkerSettings) -> tuple[str, str]:
    """What ``rolecall worker --check`` says of the trust configuration: (ok, warn or FAIL;
    the detail), by the agent's own rules."""
    if not settings.trusted_keys:
        if settings.accept_unsigned:
            return "warn", "none; --accept-unsigned: unsigned jobs run (development only)"
        return "FAIL", NO_TRUSTED_KEY
    try:
        loaded = TrustedKeys(settings.trusted_keys)
    except ConfigError as e:
        return "FAIL", e.message
    ids = ", ".join(loaded.keys)
    return "ok", f"{len(loaded.keys)} Ed25519 key(s) ({ids}); unsigned or replayed work refused"


def verifier(settings: WorkerSettings) -> Verify:
    """The agent's check of jobs and baselines; ConfigError without a key, unless unsigned
    work was explicitly accepted."""
    if not settings.trusted_keys:
        if not settings.accept_unsigned:
            raise ConfigError(NO_TRUSTED_KEY)
        return lambda raw, wrapped: None
    return TrustedKeys(settings.trusted_keys).verify
