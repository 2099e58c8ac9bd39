"""Delivering results to the client's own endpoints: upload (``uploadEndpoint``) and webhook (``webhookURL``).

Both are HTTP calls to URLs the client chose, so both go through ``UrlGuard`` before EVERY attempt
and connect only to the addresses the guard vetted (a pinned resolver: a DNS answer that changes
between the check and the connect cannot steer the farm into its own network). Redirects are not
followed, for the same reason: a 3xx is a final failure.

Retry policy, shared by both (``tenacity``): 2xx is success; 429, 5xx, connection errors and
timeouts are retried; any other status (and a 3xx) is final. The wait before a retry is the
``Retry-After`` of a 429 or 503 (seconds or an HTTP date, up to a minute), else exponential backoff
with jitter, so many farms' retries do not arrive in lockstep. Exhausted retries are reported in a
``DeliveryOutcome``, not raised, so the caller records the outcome on the result;
``DeliveryOutcome.raise_for_failure`` turns it into a ``DeliveryError`` where a caller prefers
that. A ``ForbiddenURLError`` is raised. ``limiter`` (an ``asyncio.Semaphore``) bounds how many
attempts run at once across callers; it is not held while waiting to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt, wait_exponential_jitter
from yarl import URL

from farm.domain.errors import DeliveryError, public_message
from farm.domain.records import ResultRecord
from farm.io.urlguard import UrlGuard

__all__ = ["DeliveryOutcome", "upload_file", "post_webhook", "webhook_payload", "retry_after_seconds"]

_USER_AGENT = "skyreels-farm-delivery/0.1"
#: No single wait between attempts is longer, whatever the backoff or Retry-After says.
_MAX_DELAY_S = 60.0
#: Statuses whose Retry-After sets the wait before the next attempt.
_RETRY_AFTER_STATUSES = (429, 503)


@dataclass(frozen=True)
class DeliveryOutcome:
    """How a delivery ended: ``ok``, after how many ``attempts``, the last HTTP ``status`` and ``error``."""

    ok: bool
    attempts: int
    #: The last response's status code; None if the last attempt got no response.
    status: int | None
    #: Why the last attempt failed (``"HTTP 503"``, ``"ClientConnectorError: ..."``); None when ok.
    error: str | None

    def raise_for_failure(self, what: str = "delivery") -> None:
        """Raise ``DeliveryError`` unless the delivery succeeded."""
        if not self.ok:
            raise DeliveryError(f"{what} failed after {self.attempts} attempt(s): {self.error}")


async def upload_file(
    url: str,
    path: Path,
    *,
    content_type: str,
    guard: UrlGuard,
    attempts: int = 5,
    backoff_s: float = 0.5,
    timeout_s: float = 300,
    limiter: asyncio.Semaphore | None = None,
) -> DeliveryOutcome:
    """PUT the raw bytes of ``path`` to ``url`` (the task's ``uploadEndpoint``), retrying as the module says.

    The body is streamed from the file (never held in memory) with ``Content-Length`` and
    ``Content-Type`` set, as presigned S3/GCS PUT URLs expect. ``timeout_s`` bounds each attempt.
    Raises ``ForbiddenURLError`` if the guard refuses the URL (before any request is made).
    """
    path = Path(path)
    size = path.stat().st_size  # a missing file is a bug upstream, not a delivery failure
    headers = {"Content-Type": content_type, "Content-Length": str(size), "User-Agent": _USER_AGENT}

    async def send(session: aiohttp.ClientSession) -> tuple[int, float | None]:
        with path.open("rb") as body:
            async with session.put(url, data=body, headers=headers, allow_redirects=False) as response:
                return response.status, _retry_after(response.headers)

    return await _deliver(send, url, "uploadEndpoint", guard, attempts, backoff_s, timeout_s, limiter)


async def post_webhook(
    url: str,
    payload: dict,
    *,
    idempotency_key: str,
    guard: UrlGuard,
    attempts: int = 6,
    backoff_s: float = 0.5,
    timeout_s: float = 30,
    limiter: asyncio.Semaphore | None = None,
) -> DeliveryOutcome:
    """POST ``payload`` as JSON to ``url`` (the task's ``webhookURL``), retrying as the module says.

    Every attempt sends the same body and the same ``Idempotency-Key`` header, so a receiver that
    saw an attempt whose response was lost can drop the repeat. Pass a key that is stable across
    gateway restarts too, e.g. ``f"{task_uuid}:{result_index}"``.
    Raises ``ForbiddenURLError`` if the guard refuses the URL (before any request is made).
    """
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key, "User-Agent": _USER_AGENT}

    async def send(session: aiohttp.ClientSession) -> tuple[int, float | None]:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            return response.status, _retry_after(response.headers)

    return await _deliver(send, url, "webhookURL", guard, attempts, backoff_s, timeout_s, limiter)


def webhook_payload(record: ResultRecord, *, task_type: str = "videoInference") -> dict[str, Any]:
    """The webhook body for one finished result, in the platform's response shape.

        >>> webhook_payload(ResultRecord(task_uuid="t1", index=0, status="success", seed=7,
        ...                              video_uuid="v1", video_url="https://farm/v/v1.mp4"))
        {'data': [{'taskType': 'videoInference', 'taskUUID': 't1', 'status': 'success', 'videoUUID': 'v1', 'videoURL': 'https://farm/v/v1.mp4', 'seed': 7}]}
        >>> webhook_payload(ResultRecord(task_uuid="t1", index=1, status="error",
        ...                              error_code="workerLost", error_message="actor 3 died on 10.0.0.7"))
        {'errors': [{'code': 'workerLost', 'message': 'a render worker was lost and no other could finish the result', 'taskUUID': 't1'}]}

    ``cost`` appears only when it was computed (``includeCost``); ``videoURL`` only when the result
    is served by URL; ``extendedPrompt`` only when ``promptExtend`` rewrote the prompt; an error's
    ``parameter`` only when it is about one field (a media input). A server-side error's message is
    its short public text (``farm.domain.errors.public_message``): the details are for the server log. A result still queued or running has nothing to deliver: ``ValueError``.
    """
    if record.status == "success":
        item: dict[str, Any] = {
            "taskType": task_type,
            "taskUUID": record.task_uuid,
            "status": "success",
            "videoUUID": record.video_uuid,
        }
        for key, value in (
            ("videoURL", record.video_url),
            ("seed", record.seed),
            ("cost", record.cost),
            ("extendedPrompt", record.extended_prompt),
        ):
            if value is not None:
                item[key] = value
        return {"data": [item]}
    if record.status in ("error", "cancelled"):
        cancelled = record.status == "cancelled"
        code = record.error_code or ("taskCancelled" if cancelled else "internalError")
        message = public_message(code, record.error_message or ("the task was cancelled" if cancelled else ""))
        error = {"code": code, "message": message, "taskUUID": record.task_uuid}
        if record.error_parameter:
            error["parameter"] = record.error_parameter
        return {"errors": [error]}
    raise ValueError(
        f"result {record.task_uuid}:{record.index} is {record.status!r}; only finished results are delivered"
    )


class _PinnedResolver(AbstractResolver):
    """Answers the guarded host with the addresses the guard vetted, never with a fresh DNS lookup."""

    def __init__(self, host: str, addresses: list[str]):
        self._host = host.lower().rstrip(".")
        self._addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host.lower().rstrip(".") != self._host:
            raise OSError(f"refusing to resolve {host!r}: only the vetted host {self._host!r} may be reached")
        results: list[ResolveResult] = []
        for address in self._addresses:
            address_family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, address_family):
                results.append(
                    ResolveResult(
                        hostname=host,
                        host=address,
                        port=port,
                        family=address_family,
                        proto=0,
                        flags=socket.AI_NUMERICHOST,
                    )
                )
        if not results:
            raise OSError(f"no vetted address of {host!r} in address family {family!r}")
        return results

    async def close(self) -> None:
        pass


# The response body is never read: only the status matters, and a hostile receiver could
# stream an endless body into memory. force_close drops the connection with it.


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delay-seconds or an HTTP date; None if absent or unreadable.

    >>> retry_after_seconds("1.5")
    1.5
    >>> retry_after_seconds("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0)
    10.0
    >>> retry_after_seconds("soon") is None
    True
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # an HTTP date is always GMT; one without a zone is not an HTTP date
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _retry_after(headers: Any) -> float | None:
    return retry_after_seconds(headers.get("Retry-After"))


Send = Callable[[aiohttp.ClientSession], Awaitable[tuple[int, "float | None"]]]


@dataclass(frozen=True)
class _Attempt:
    """What one attempt got: a status (None: no response) and what its Retry-After asked."""

    status: int | None
    retry_after: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later: no response, 429 or 5xx."""
        return self.status is None or self.status == 429 or self.status >= 500


def _wait(backoff_s: float) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=backoff_s, max=_MAX_DELAY_S, jitter=backoff_s)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        last = outcome.result() if outcome is not None and not outcome.failed else None
        if isinstance(last, _Attempt) and last.retry_after is not None and last.status in _RETRY_AFTER_STATUSES:
            return min(_MAX_DELAY_S, last.retry_after)
        return backoff(state)

    return wait


async def _deliver(
    send: Send,
    url: str,
    field: str,
    guard: UrlGuard,
    attempts: int,
    backoff_s: float,
    timeout_s: float,
    limiter: asyncio.Semaphore | None = None,
) -> DeliveryOutcome:
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    host = URL(url).host or ""
    made = 0

    async def attempt() -> _Attempt:
        nonlocal made
        async with limiter if limiter is not None else contextlib.nullcontext():
            made += 1
            # Every attempt re-checks: the allow-list or the DNS answer may have changed since the last.
            addresses = await guard.resolve_async(url, field)
            connector = aiohttp.TCPConnector(resolver=_PinnedResolver(host, addresses), force_close=True)
            try:
                async with aiohttp.ClientSession(
                    connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
                ) as session:
                    status, retry_after = await send(session)
            except (TimeoutError, aiohttp.ClientError, OSError) as caught:
                return _Attempt(None, None, f"{type(caught).__name__}: {caught}".rstrip(": "))
        return _Attempt(status, retry_after, None if 200 <= status < 300 else f"HTTP {status}")

    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=_wait(backoff_s),
        retry=retry_if_result(lambda result: not result.ok and result.transient),
        # Out of attempts: answer the last attempt rather than raise RetryError. A ForbiddenURLError
        # is not a result: it is raised as it is, at once.
        retry_error_callback=lambda state: state.outcome.result() if state.outcome is not None else None,
        reraise=True,
    )
    last: _Attempt = await retrying(attempt)
    return DeliveryOutcome(ok=last.ok, attempts=made, status=last.status, error=last.error)
