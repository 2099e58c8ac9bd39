"""Uploads and webhooks as a service on the gateway's event loop.

    service = DeliveryService(UrlGuard(config.allow_urls), on_outcome=store, max_concurrent=8)
    await service.start()                      # on the gateway's loop
    service.submit(DeliveryJob(...))           # from the loop or any thread; returns at once
    ...
    await service.stop(grace=5.0)

A job is one result's upload (HTTP PUT of its file to ``uploadEndpoint``) and/or webhook (one POST
of ``webhook_payload`` to ``webhookURL``), in that order. Each call is retried by
``farm.io.delivery`` (tenacity: ``Retry-After`` on 429/503, exponential backoff with jitter
otherwise), re-vetted by the ``UrlGuard`` before every attempt and pinned to the vetted addresses.
At most ``max_concurrent`` attempts run at once, whoever submitted them; a job waiting to retry
holds no slot. When a job ends, ``on_outcome(report)`` is called once, on the loop, with what
happened (``report.upload_status`` / ``report.webhook_status``: ``delivered`` or ``failed``), so the
caller can store it; ``on_upload(report)``, if given, is called as soon as the upload ended and
before the webhook starts, so a restart in between does not upload twice.

A job cut off by ``stop`` gets no outcome: its stored status is still ``pending`` and the next
start delivers it again (the webhook with the same ``Idempotency-Key``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from farm.domain.errors import ForbiddenURLError, clip
from farm.io import delivery
from farm.io.delivery import DeliveryOutcome
from farm.io.urlguard import UrlGuard

log = logging.getLogger(__name__)

__all__ = ["DeliveryJob", "DeliveryReport", "DeliveryService"]

DeliveryStatus = Literal["delivered", "failed"]
#: Called with a ``DeliveryReport``; may be a coroutine function (awaited on the loop).
OutcomeCallback = Callable[["DeliveryReport"], Any]


@dataclass(frozen=True, kw_only=True)
class DeliveryJob:
    """One result to deliver: an upload of ``file_path``, a webhook of ``webhook_payload``, or both.

    ``idempotency_key`` is sent with every webhook attempt; it must be stable across retries and
    gateway restarts (the default, ``"<task_uuid>:<index>"``, is) so a receiver can drop repeats.
    """

    task_uuid: str
    index: int
    upload_endpoint: str | None = None
    webhook_url: str | None = None
    file_path: Path | str | None = None
    content_type: str = "application/octet-stream"
    webhook_payload: dict[str, Any] | None = None
    idempotency_key: str = ""

    def __post_init__(self) -> None:
        if not self.idempotency_key:
            object.__setattr__(self, "idempotency_key", f"{self.task_uuid}:{self.index}")
        if self.webhook_url and self.webhook_payload is None:
            raise ValueError(f"job {self.task_uuid}:{self.index} has a webhook_url but no webhook_payload")

    @property
    def key(self) -> tuple[str, int]:
        """Which result this job delivers: at most one job per key is in flight."""
        return (self.task_uuid, self.index)


@dataclass(frozen=True)
class DeliveryReport:
    """What happened to a job: each part's ``DeliveryOutcome``, None for a part it did not ask for."""

    job: DeliveryJob
    upload: DeliveryOutcome | None = None
    webhook: DeliveryOutcome | None = None
    #: Seconds from the job's start to its end.
    seconds: float = field(default=0.0, compare=False)

    @property
    def upload_status(self) -> DeliveryStatus | None:
        """``delivered`` / ``failed``, or None when the job has no upload (the result's ``upload_status``)."""
        return None if self.upload is None else "delivered" if self.upload.ok else "failed"

    @property
    def webhook_status(self) -> DeliveryStatus | None:
        """``delivered`` / ``failed``, or None when the job has no webhook (the result's ``webhook_status``)."""
        return None if self.webhook is None else "delivered" if self.webhook.ok else "failed"

    @property
    def ok(self) -> bool:
        """Whether every part the job asked for was delivered."""
        return all(part is None or part.ok for part in (self.upload, self.webhook))


class DeliveryService:
    """Delivers ``DeliveryJob`` s on one event loop, under one bound on concurrent attempts.

    ``metrics`` (optional, a ``FarmMetrics``) counts failures by kind and observes the ``deliver``
    stage. The retry parameters are those of ``farm.io.delivery.upload_file`` / ``post_webhook``.
    """

    def __init__(
        self,
        guard: UrlGuard,
        *,
        on_outcome: OutcomeCallback,
        on_upload: OutcomeCallback | None = None,
        max_concurrent: int = 8,
        metrics: Any = None,
        upload_attempts: int = 5,
        webhook_attempts: int = 6,
        backoff_s: float = 0.5,
        upload_timeout_s: float = 300.0,
        webhook_timeout_s: float = 30.0,
    ):
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self.guard = guard
        self.on_outcome = on_outcome
        self.on_upload = on_upload
        self.max_concurrent = max_concurrent
        self.metrics = metrics
        self.upload_attempts = upload_attempts
        self.webhook_attempts = webhook_attempts
        self.backoff_s = backoff_s
        self.upload_timeout_s = upload_timeout_s
        self.webhook_timeout_s = webhook_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: asyncio.Semaphore | None = None
        self._jobs: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._closing = False

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind the service to the running loop (the gateway's); ``submit`` works from then on."""
        self._loop = asyncio.get_running_loop()
        self._limiter = asyncio.Semaphore(self.max_concurrent)
        self._closing = False

    async def stop(self, grace: float = 5.0) -> None:
        """Refuse new jobs, give those in flight ``grace`` seconds, then cancel the rest (no outcome)."""
        self._closing = True
        tasks = list(self._jobs.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.info("delivery: %d job(s) cut off by shutdown stay pending", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet ended."""
        return len(self._jobs)

    # ---------------------------------------------------------------- submitting

    def submit(self, job: DeliveryJob) -> None:
        """Queue ``job`` and return at once; safe to call from any thread.

        A job for a result whose delivery is already in flight is ignored (it is the same result,
        e.g. a redelivery racing a fresh one). Raises ``RuntimeError`` before ``start`` or after ``stop``.
        """
        loop = self._loop
        if loop is None or self._closing:
            raise RuntimeError("DeliveryService is not running: call start() on the gateway's loop first")
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._begin(job)
        else:
            loop.call_soon_threadsafe(self._begin, job)

    def _begin(self, job: DeliveryJob) -> None:
        if self._closing:
            log.warning("delivery of %s:%d refused: shutting down (it stays pending)", job.task_uuid, job.index)
            return
        if job.key in self._jobs:
            log.info("delivery of %s:%d is already in flight; ignoring the repeat", job.task_uuid, job.index)
            return
        task = asyncio.get_running_loop().create_task(self._run(job), name=f"deliver-{job.task_uuid}:{job.index}")
        self._jobs[job.key] = task
        task.add_done_callback(lambda _: self._jobs.pop(job.key, None))

    # ---------------------------------------------------------------- delivering

    async def _run(self, job: DeliveryJob) -> None:
        started = time.monotonic()
        upload: DeliveryOutcome | None = None
        webhook: DeliveryOutcome | None = None
        if job.upload_endpoint:
            upload = await self._upload(job)
            if self.on_upload is not None and job.webhook_url:
                await self._call(self.on_upload, DeliveryReport(job, upload, None, time.monotonic() - started))
        if job.webhook_url:
            webhook = await self._webhook(job)
        seconds = time.monotonic() - started
        if self.metrics is not None:
            try:
                self.metrics.observe_stage("deliver", seconds)
            except Exception:  # metrics must never fail a delivery
                log.exception("metrics.observe_stage failed")
        await self._call(self.on_outcome, DeliveryReport(job, upload, webhook, seconds))

    async def _upload(self, job: DeliveryJob) -> DeliveryOutcome:
        assert job.upload_endpoint is not None
        if job.file_path is None or not Path(job.file_path).is_file():
            log.error("upload of %s:%d: the result file %s is missing", job.task_uuid, job.index, job.file_path)
            return self._failed("upload", job, "the result file is missing")
        return await self._guarded(
            "upload",
            job,
            delivery.upload_file(
                job.upload_endpoint,
                Path(job.file_path),
                content_type=job.content_type,
                guard=self.guard,
                attempts=self.upload_attempts,
                backoff_s=self.backoff_s,
                timeout_s=self.upload_timeout_s,
                limiter=self._limiter,
            ),
        )

    async def _webhook(self, job: DeliveryJob) -> DeliveryOutcome:
        assert job.webhook_url is not None and job.webhook_payload is not None
        return await self._guarded(
            "webhook",
            job,
            delivery.post_webhook(
                job.webhook_url,
                job.webhook_payload,
                idempotency_key=job.idempotency_key,
                guard=self.guard,
                attempts=self.webhook_attempts,
                backoff_s=self.backoff_s,
                timeout_s=self.webhook_timeout_s,
                limiter=self._limiter,
            ),
        )

    async def _guarded(self, kind: str, job: DeliveryJob, call: Any) -> DeliveryOutcome:
        """Run one part; a refused URL or a bug is a failed outcome (logged), never an exception."""
        try:
            outcome: DeliveryOutcome = await call
        except ForbiddenURLError as exc:
            log.warning("%s of %s:%d refused: %s", kind, job.task_uuid, job.index, exc)
            return self._failed(kind, job, f"URL refused: {clip(str(exc), 256)}")
        except Exception:  # keep delivering other jobs; the outcome says failed
            log.exception("%s of %s:%d failed", kind, job.task_uuid, job.index)
            return self._failed(kind, job, "internal error")
        if not outcome.ok:
            log.warning(
                "%s of %s:%d failed after %d attempt(s): %s",
                kind,
                job.task_uuid,
                job.index,
                outcome.attempts,
                outcome.error,
            )
            self._count_failure(kind)
        return outcome

    def _failed(self, kind: str, job: DeliveryJob, error: str) -> DeliveryOutcome:
        self._count_failure(kind)
        return DeliveryOutcome(ok=False, attempts=0, status=None, error=error)

    def _count_failure(self, kind: str) -> None:
        if self.metrics is not None:
            try:
                self.metrics.delivery_failed(kind)
            except Exception:  # metrics must never fail a delivery
                log.exception("metrics.delivery_failed failed")

    @staticmethod
    async def _call(callback: OutcomeCallback, report: DeliveryReport) -> None:
        try:
            result = callback(report)
            if inspect.isawaitable(result):
                await result
        except Exception:  # the caller's storage failing must not stop other deliveries
            log.exception("delivery callback failed for %s:%d", report.job.task_uuid, report.job.index)
