"""DeliveryService against real aiohttp receivers on loopback: retries, Retry-After, concurrency, outcomes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from farm.gateway.delivery import DeliveryJob, DeliveryReport, DeliveryService
from farm.gateway.metrics import FarmMetrics
from farm.io.delivery import retry_after_seconds
from farm.io.urlguard import UrlGuard

LOOPBACK = UrlGuard(allow=["127.0.0.1"])


@dataclass
class Receiver:
    """A loopback HTTP server: scripted statuses (then 200), a delay per request, and a log of
    when each request arrived and how many were in progress at once."""

    statuses: list[int] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    arrivals: list[float] = field(default_factory=list)
    requests: list[tuple[str, str, dict, bytes]] = field(default_factory=list)
    concurrent: int = 0
    most_concurrent: int = 0
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.concurrent += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            self.arrivals.append(time.monotonic())
            body = await request.read()
            self.requests.append((request.method, request.path, dict(request.headers), body))
            n = len(self.requests) - 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = self.statuses[n] if n < len(self.statuses) else 200
            return web.Response(status=status, headers=self.headers if status >= 400 else {})
        finally:
            self.concurrent -= 1

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def serving(receiver: Receiver):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = runner.addresses[0][1]
    try:
        yield receiver
    finally:
        await runner.cleanup()


class Outcomes:
    """The ``on_outcome`` callback: every report, and an event set at each one."""

    def __init__(self):
        self.reports: list[DeliveryReport] = []
        self.arrived = asyncio.Event()

    def __call__(self, report: DeliveryReport) -> None:
        self.reports.append(report)
        self.arrived.set()

    async def wait(self, count: int, timeout: float = 30) -> list[DeliveryReport]:
        """Return once ``count`` reports have arrived."""

        async def enough() -> None:
            while len(self.reports) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), timeout)
        return self.reports


def webhook_job(url: str, index: int = 0, task_uuid: str = "t-1") -> DeliveryJob:
    return DeliveryJob(task_uuid=task_uuid, index=index, webhook_url=url, webhook_payload={"data": [{"i": index}]})


async def started(outcomes: Outcomes, **kwargs) -> DeliveryService:
    service = DeliveryService(LOOPBACK, on_outcome=outcomes, backoff_s=0.01, **kwargs)
    await service.start()
    return service


def test_a_503_with_retry_after_is_retried_after_that_long():
    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver(statuses=[503], headers={"Retry-After": "1"})) as receiver:
            service = await started(outcomes)
            service.submit(webhook_job(receiver.url()))
            (report,) = await outcomes.wait(1)
            await service.stop()
        return report, receiver

    report, receiver = asyncio.run(scenario())
    assert report.webhook_status == "delivered" and report.webhook.attempts == 2
    assert receiver.arrivals[1] - receiver.arrivals[0] >= 0.9


def test_a_429_with_an_http_date_is_honoured():
    async def scenario():
        outcomes = Outcomes()
        when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 2))
        async with serving(Receiver(statuses=[429], headers={"Retry-After": when})) as receiver:
            service = await started(outcomes)
            service.submit(webhook_job(receiver.url()))
            (report,) = await outcomes.wait(1)
        return report, receiver

    report, receiver = asyncio.run(scenario())
    assert report.ok and report.webhook.attempts == 2
    assert receiver.arrivals[1] - receiver.arrivals[0] >= 0.9  # the date is 1..2 s ahead (whole seconds)


def test_a_4xx_is_not_retried_and_the_outcome_says_failed():
    metrics = FarmMetrics()

    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver(statuses=[404])) as receiver:
            service = await started(outcomes, metrics=metrics)
            service.submit(webhook_job(receiver.url()))
            reports = await outcomes.wait(1)
            await asyncio.sleep(0.2)  # no retry arrives late
        return reports, receiver

    reports, receiver = asyncio.run(scenario())
    (report,) = reports
    assert len(receiver.requests) == 1
    assert (report.webhook_status, report.webhook.status, report.webhook.attempts) == ("failed", 404, 1)
    assert report.upload is None and report.upload_status is None and not report.ok
    assert metrics.registry.get_sample_value("farm_delivery_failures_total", {"kind": "webhook"}) == 1


def test_5xx_and_connection_errors_back_off_and_retry():
    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver(statuses=[500, 502])) as receiver:
            service = await started(outcomes)
            service.submit(webhook_job(receiver.url()))
            (report,) = await outcomes.wait(1)
        return report, receiver

    report, receiver = asyncio.run(scenario())
    assert report.ok and report.webhook.attempts == 3
    assert {r[2]["Idempotency-Key"] for r in receiver.requests} == {"t-1:0"}


def test_the_semaphore_bounds_concurrent_requests_and_each_job_reports_once():
    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver(delay_s=0.3)) as receiver:
            service = await started(outcomes, max_concurrent=2)
            for index in range(6):
                service.submit(webhook_job(receiver.url(), index=index))
            reports = await outcomes.wait(6)
            await asyncio.sleep(0.1)
        return reports, receiver

    reports, receiver = asyncio.run(scenario())
    assert receiver.most_concurrent == 2
    assert sorted(r.job.index for r in reports) == list(range(6))  # once per job
    assert all(r.ok for r in reports)


def test_upload_then_webhook_and_the_upload_is_stored_before_the_webhook(tmp_path):
    video = tmp_path / "result.mp4"
    video.write_bytes(b"mp4 bytes")
    seen: list[tuple[str, str | None, str | None]] = []

    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver()) as receiver:
            service = DeliveryService(
                LOOPBACK,
                on_outcome=outcomes,
                on_upload=lambda report: seen.append(("upload", report.upload_status, report.webhook_status)),
                backoff_s=0.01,
            )
            await service.start()
            service.submit(
                DeliveryJob(
                    task_uuid="t-2",
                    index=1,
                    upload_endpoint=receiver.url("/bucket/x.mp4"),
                    webhook_url=receiver.url("/hook"),
                    file_path=video,
                    content_type="video/mp4",
                    webhook_payload={"data": [{"taskUUID": "t-2"}]},
                )
            )
            (report,) = await outcomes.wait(1)
        return report, receiver

    report, receiver = asyncio.run(scenario())
    assert seen == [("upload", "delivered", None)]
    assert (report.upload_status, report.webhook_status) == ("delivered", "delivered")
    (put, post) = receiver.requests
    assert (put[0], put[1], put[3], put[2]["Content-Type"]) == ("PUT", "/bucket/x.mp4", b"mp4 bytes", "video/mp4")
    assert (post[0], json.loads(post[3]), post[2]["Idempotency-Key"]) == (
        "POST",
        {"data": [{"taskUUID": "t-2"}]},
        "t-2:1",
    )


def test_submit_from_another_thread():
    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver()) as receiver:
            service = await started(outcomes)
            threads = [
                threading.Thread(target=service.submit, args=(webhook_job(receiver.url(), index=i),)) for i in range(3)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                await asyncio.to_thread(thread.join)
            reports = await outcomes.wait(3)
        return reports

    assert sorted(r.job.index for r in asyncio.run(scenario())) == [0, 1, 2]


def test_a_refused_url_and_a_missing_file_are_failed_outcomes_without_requests(tmp_path):
    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver()) as receiver:
            service = DeliveryService(UrlGuard(), on_outcome=outcomes, backoff_s=0.01)  # loopback refused
            await service.start()
            service.submit(webhook_job(receiver.url()))
            service.submit(
                DeliveryJob(
                    task_uuid="t-3", index=0, upload_endpoint="https://example.com/x", file_path=tmp_path / "gone.mp4"
                )
            )
            reports = await outcomes.wait(2)
        return reports, receiver

    reports, receiver = asyncio.run(scenario())
    assert receiver.requests == []
    by_task = {r.job.task_uuid: r for r in reports}
    assert by_task["t-1"].webhook_status == "failed" and "loopback" in by_task["t-1"].webhook.error
    assert by_task["t-3"].upload_status == "failed" and "missing" in by_task["t-3"].upload.error


def test_a_repeat_in_flight_is_ignored_and_stop_cuts_off_without_an_outcome():
    async def scenario():
        outcomes = Outcomes()
        async with serving(Receiver(statuses=[503] * 100, headers={"Retry-After": "30"})) as receiver:
            service = await started(outcomes)
            service.submit(webhook_job(receiver.url()))
            service.submit(webhook_job(receiver.url()))  # the same result: ignored while in flight
            while not receiver.requests:
                await asyncio.sleep(0.01)
            assert service.in_flight == 1
            await service.stop(grace=0.2)  # waiting 30 s to retry: cut off
            with pytest.raises(RuntimeError, match="not running"):
                service.submit(webhook_job(receiver.url(), index=1))
        return outcomes.reports, receiver

    reports, receiver = asyncio.run(scenario())
    assert reports == [] and len(receiver.requests) == 1


def test_a_failing_callback_does_not_stop_other_deliveries(caplog):
    calls: list[int] = []

    def flaky(report: DeliveryReport) -> None:
        calls.append(report.job.index)
        if report.job.index == 0:
            raise RuntimeError("store is down")

    async def scenario():
        async with serving(Receiver()) as receiver:
            service = DeliveryService(LOOPBACK, on_outcome=flaky, backoff_s=0.01)
            await service.start()
            service.submit(webhook_job(receiver.url(), index=0))
            service.submit(webhook_job(receiver.url(), index=1))
            while len(calls) < 2:
                await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert sorted(calls) == [0, 1] and "store is down" in caplog.text


def test_jobs_are_checked():
    with pytest.raises(ValueError, match="no webhook_payload"):
        DeliveryJob(task_uuid="t", index=0, webhook_url="https://example.com/hook")
    assert DeliveryJob(task_uuid="t", index=2).idempotency_key == "t:2"
    with pytest.raises(ValueError, match="max_concurrent"):
        DeliveryService(LOOPBACK, on_outcome=print, max_concurrent=0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), (" 0.5 ", 0.5), ("-4", 0.0), ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0), ("soon", None), (None, None)],
)
def test_retry_after_values(value, seconds):
    assert retry_after_seconds(value, now=1445412480.0) == seconds
