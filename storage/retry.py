"""Which storage failures are worth retrying, and the translation into rolecall's errors.

The SDK's own retry policy is switched off (``retry_total=0``) so that tenacity is the only
retry layer: one place decides, and each retry is visible to the transaction meter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from tenacity import (
    retry,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from rolecall.schemas.errors import (
    AccessDenied,
    ConcurrencyConflict,
    LeaseLost,
    NotFound,
    StorageError,
    StorageUnavailable,
)
from rolecall.schemas.redact import redact

P = ParamSpec("P")
R = TypeVar("R")

_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def azure_error(exc: BaseException) -> BaseException:
    """The Azure error behind ``exc``.

    The SDK's own error formatting can fail on a response without a ``Message`` (seen with
    503s from proxies: ``TypeError`` in ``process_storage_error``); the real error is then the
    exception being handled when that happened.
    """
    seen = exc
    while not isinstance(seen, AzureError) and seen.__context__ is not None:
        seen = seen.__context__
    return seen if isinstance(seen, AzureError) else exc


def is_transient(exc: BaseException) -> bool:
    exc = azure_error(exc)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return True
    return isinstance(exc, HttpResponseError) and exc.status_code in _TRANSIENT_STATUS


def error_code(exc: HttpResponseError) -> str:
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


#: what an operator sees first when the namespace (or a role in it) was never deployed
_UNDEPLOYED = dict.fromkeys(
    ("ContainerNotFound", "QueueNotFound"),
    "; is this namespace deployed for the role? docs/deploy.md, or --namespace",
)


def translate(exc: BaseException, what: str) -> StorageError:
    """Map an SDK exception to the rolecall error a caller can act on."""
    exc = azure_error(exc)
    text = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    if is_transient(exc):
        return StorageUnavailable(f"{what}: storage unavailable ({text})")
    if isinstance(exc, ClientAuthenticationError):
        return AccessDenied(f"{what}: credentials refused ({text})")
    if isinstance(exc, HttpResponseError):
        code = error_code(exc)
        if code in ("PopReceiptMismatch", "popreceiptmismatch") or "PopReceipt" in code:
            return LeaseLost(f"{what}: lease lost (pop receipt is stale)")
        if exc.status_code == 403:
            return AccessDenied(f"{what}: access denied ({code or text})")
        if isinstance(exc, ResourceNotFoundError) or exc.status_code == 404:
            return NotFound(f"{what}: not found ({code or text}{_UNDEPLOYED.get(code, '')})")
        if isinstance(exc, (ResourceModifiedError, ResourceExistsError)) or exc.status_code in (
            409,
            412,
        ):
            return ConcurrencyConflict(f"{what}: changed concurrently ({code or text})")
        return StorageError(f"{what}: HTTP {exc.status_code} {code or text}")
    return StorageError(f"{what}: {text}")


#: every kind :func:`error_kind` gives
ERROR_KINDS = frozenset({"network", "throttled", "timeout", "server", "denied", "not_found",
                         "conflict", "lease_lost", "client"})  # fmt: skip


def error_kind(exc: BaseException) -> str | None:
    """What kind of failure one storage request met, as Azure Monitor splits transactions by
    response type: ``network`` (no answer), ``throttled`` (429, 503 ServerBusy), ``timeout``,
    ``server``, ``denied``, ``not_found``, ``conflict`` (409/412: an ETag or create-only race),
    ``lease_lost`` (a stale pop receipt) or ``client``. None: not a storage failure at all."""
    exc = azure_error(exc)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return "network"
    if isinstance(exc, ClientAuthenticationError):
        return "denied"
    if not isinstance(exc, HttpResponseError):
        return None
    status = exc.status_code or 0
    if "popreceipt" in error_code(exc).lower():
        return "lease_lost"
    by_status = {429: "throttled", 503: "throttled", 408: "timeout", 504: "timeout",
                 401: "denied", 403: "denied", 404: "not_found", 409: "conflict",
                 412: "conflict"}  # fmt: skip
    if status in by_status:
        return by_status[status]
    if error_code(exc) == "OperationTimedOut":
        return "timeout"
    return "server" if status >= 500 else "client"


def transient_retry(
    attempts: int = 6,
    max_delay: float = 30.0,
    max_wait: float = 4.0,
    should_retry: Callable[[BaseException], bool] = is_transient,
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Retry transient failures with jittered exponential back-off, then re-raise."""
    return retry(
        retry=retry_if_exception(should_retry),
        wait=wait_random_exponential(multiplier=0.1, max=max_wait),
        stop=stop_after_attempt(attempts) | stop_after_delay(max_delay),
        reraise=True,
    )


class RetryPolicy:
    """How long one storage call keeps retrying transient failures before it gives up.

    The agent and the controller are patient (:data:`PATIENT`, about half a minute): a storage
    blip should cost a delay, not a job. A diagnostic is not (:data:`QUICK`): minutes of
    patience would make a dead endpoint look like a hung command.

    ``observe`` hears the kind of every failed attempt (:func:`error_kind`), retried or not:
    the transaction meter counts errors with it (``Storage`` passes its own).
    """

    def __init__(
        self,
        attempts: int = 6,
        max_delay: float = 30.0,
        max_wait: float = 4.0,
        observe: Callable[[str], None] | None = None,
    ) -> None:
        self._limits = (attempts, max_delay, max_wait)
        self._observe = observe
        self._retry = transient_retry(attempts, max_delay, max_wait, self._failed)

    def observed(self, observe: Callable[[str], None]) -> RetryPolicy:
        """The same patience, with every failed attempt reported to ``observe``."""
        return RetryPolicy(*self._limits, observe=observe)

    def _failed(self, exc: BaseException) -> bool:
        if self._observe is not None and (kind := error_kind(exc)) is not None:
            self._observe(kind)
        return is_transient(exc)

    def call(self, what: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run one storage call with transient retries and translated errors."""
        try:
            return self._retry(fn)(*args, **kwargs)
        except StorageError:
            raise
        except Exception as exc:
            if isinstance(azure_error(exc), AzureError):
                raise translate(exc, what) from exc
            if isinstance(exc, (ConnectionError, TimeoutError)):
                raise translate(exc, what) from exc
            raise


PATIENT = RetryPolicy()
#: one quick retry, within five seconds
QUICK = RetryPolicy(attempts=2, max_delay=5.0, max_wait=1.0)


def call(what: str, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """Run one storage call with the patient policy (``QUICK.call`` for the impatient)."""
    return PATIENT.call(what, fn, *args, **kwargs)
