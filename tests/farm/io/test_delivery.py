"""Upload and webhook delivery against real aiohttp receivers on loopback."""

from __future__ import annotations

import asyncio
import doctest
import json
import socket
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web

import farm.io.delivery
from farm.domain.errors import DeliveryError, ForbiddenURLError
from farm.domain.records import ResultRecord
from farm.io.delivery import DeliveryOutcome, post_webhook, upload_file, webhook_payload
from farm.io.urlguard import UrlGuard

LOOPBACK = UrlGuard(allow=["127.0.0.1"])


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that answers the scripted statuses in order, then 200."""

    statuses: list[int] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)
    extra_headers: dict[str, str] = field(default_factory=dict)
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Received(request.method, request.path, dict(request.headers), body))
        n = len(self.requests) - 1
        if n < len(self.delays_s):
            await asyncio.sleep(self.delays_s[n])
        status = self.statuses[n] if n < len(self.statuses) else 200
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": "/elsewhere"})
        return web.Response(status=status, text="ok" if status < 300 else "no", headers=self.extra_headers)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@asynccontextmanager
async def serving(receiver: Receiver):
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    receiver.port = site._server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        await runner.cleanup()


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(coroutine):
    return asyncio.run(coroutine)


def test_upload_puts_the_file_bytes(tmp_path):
    data = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit, every byte value
    video = tmp_path / "result.mp4"
    video.write_bytes(data)

    async def scenario():
        async with serving(Receiver()) as receiver:
            outcome = await upload_file(
                receiver.url("/bucket/result.mp4?sig=abc"),
                video,
                content_type="video/mp4",
                guard=LOOPBACK,
                backoff_s=0.01,
            )
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert outcome == DeliveryOutcome(ok=True, attempts=1, status=200, error=None)
    [request] = requests
    assert (request.method, request.path) == ("PUT", "/bucket/result.mp4")
    assert request.body == data
    assert request.headers["Content-Length"] == str(len(data))
    assert request.headers["Content-Type"] == "video/mp4"
    assert "chunked" not in request.headers.get("Transfer-Encoding", "")


def test_upload_retries_5xx_and_429_then_succeeds(tmp_path):
    video = tmp_path / "result.webm"
    video.write_bytes(b"webm bytes")

    async def scenario():
        async with serving(Receiver(statuses=[503, 429, 500])) as receiver:
            outcome = await upload_file(
                receiver.url(), video, content_type="video/webm", guard=LOOPBACK, backoff_s=0.01
            )
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert outcome.ok and outcome.attempts == 4 and outcome.status == 200
    # Each attempt sends the whole file again, not what was left of a consumed stream.
    assert [r.body for r in requests] == [b"webm bytes"] * 4


def test_webhook_retried_after_two_failures_with_the_same_idempotency_key():
    payload = webhook_payload(
        ResultRecord(
            task_uuid="t-1",
            index=0,
            status="success",
            seed=42,
            video_uuid="v-1",
            video_url="https://farm.example/v/v-1.mp4",
        )
    )

    async def scenario():
        async with serving(Receiver(statuses=[500, 500])) as receiver:
            outcome = await post_webhook(
                receiver.url(), payload, idempotency_key="t-1:0", guard=LOOPBACK, backoff_s=0.01
            )
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert outcome == DeliveryOutcome(ok=True, attempts=3, status=200, error=None)
    assert [r.method for r in requests] == ["POST"] * 3
    assert {r.headers["Idempotency-Key"] for r in requests} == {"t-1:0"}
    assert {r.body for r in requests} == {requests[0].body}
    assert requests[0].headers["Content-Type"] == "application/json"
    assert json.loads(requests[0].body) == payload


def test_4xx_is_final():
    async def scenario():
        async with serving(Receiver(statuses=[400])) as receiver:
            outcome = await post_webhook(
                receiver.url(), {"data": []}, idempotency_key="k", guard=LOOPBACK, backoff_s=0.01
            )
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert outcome == DeliveryOutcome(ok=False, attempts=1, status=400, error="HTTP 400")
    assert len(requests) == 1
    with pytest.raises(DeliveryError, match="webhook failed after 1 attempt"):
        outcome.raise_for_failure("webhook")


def test_redirects_are_not_followed():
    # A redirect could point anywhere, past the guard: it is a final failure.
    async def scenario():
        async with serving(Receiver(statuses=[307])) as receiver:
            outcome = await post_webhook(receiver.url(), {}, idempotency_key="k", guard=LOOPBACK, backoff_s=0.01)
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert (outcome.ok, outcome.attempts, outcome.status) == (False, 1, 307)
    assert [r.path for r in requests] == ["/hook"]


def test_server_errors_exhaust_the_attempts():
    async def scenario():
        async with serving(Receiver(statuses=[502] * 10)) as receiver:
            outcome = await post_webhook(
                receiver.url(), {}, idempotency_key="k", guard=LOOPBACK, attempts=3, backoff_s=0.01
            )
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert outcome == DeliveryOutcome(ok=False, attempts=3, status=502, error="HTTP 502")
    assert len(requests) == 3


def test_connection_refused_exhausts_the_attempts(tmp_path):
    video = tmp_path / "result.mp4"
    video.write_bytes(b"x")
    url = f"http://127.0.0.1:{free_port()}/put"
    outcome = run(upload_file(url, video, content_type="video/mp4", guard=LOOPBACK, attempts=3, backoff_s=0.01))
    assert (outcome.ok, outcome.attempts, outcome.status) == (False, 3, None)
    assert "ClientConnectorError" in outcome.error


def test_timeouts_are_retried():
    async def scenario():
        async with serving(Receiver(delays_s=[2.0])) as receiver:
            outcome = await post_webhook(
                receiver.url(), {}, idempotency_key="k", guard=LOOPBACK, backoff_s=0.01, timeout_s=0.3
            )
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert outcome.ok and outcome.attempts == 2
    assert len(requests) == 2


def test_retry_after_is_honoured():
    async def scenario():
        receiver = Receiver(statuses=[429], extra_headers={"Retry-After": "0.3"})
        async with serving(receiver):
            started = asyncio.get_running_loop().time()
            outcome = await post_webhook(receiver.url(), {}, idempotency_key="k", guard=LOOPBACK, backoff_s=0.01)
            return outcome, asyncio.get_running_loop().time() - started

    outcome, elapsed = run(scenario())
    assert outcome.ok and outcome.attempts == 2
    assert elapsed >= 0.3


def test_guard_refusal_is_raised_before_any_request(tmp_path):
    video = tmp_path / "result.mp4"
    video.write_bytes(b"x")

    async def scenario():
        async with serving(Receiver()) as receiver:
            with pytest.raises(ForbiddenURLError, match="webhookURL: host 127.0.0.1 is loopback"):
                await post_webhook(receiver.url(), {}, idempotency_key="k", guard=UrlGuard(), backoff_s=0.01)
            with pytest.raises(ForbiddenURLError, match="uploadEndpoint: host 127.0.0.1 is loopback"):
                await upload_file(receiver.url(), video, content_type="video/mp4", guard=UrlGuard(), backoff_s=0.01)
            return receiver.requests

    assert run(scenario()) == []


def test_connects_only_to_the_vetted_addresses():
    # "hooks.test" does not exist in real DNS: the request can only reach the receiver through
    # the addresses the guard resolved (pinned), which is what defeats DNS rebinding.
    guard = UrlGuard(allow=["127.0.0.1"], resolver=lambda host, port: {"hooks.test": ["127.0.0.1"]}[host])

    async def scenario():
        async with serving(Receiver()) as receiver:
            outcome = await post_webhook(
                receiver.url(host="hooks.test"), {"a": 1}, idempotency_key="k", guard=guard, backoff_s=0.01
            )
            return outcome, receiver.requests

    outcome, requests = run(scenario())
    assert outcome.ok
    # The Host header (and TLS SNI) keep the name; only the connect address is pinned.
    assert requests[0].headers["Host"].startswith("hooks.test:")


def test_guard_runs_before_every_attempt():
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])  # the second lookup "rebinds" to a private address
    guard = UrlGuard(allow=["127.0.0.1"], resolver=lambda host, port: next(answers))

    async def scenario():
        async with serving(Receiver(statuses=[500])) as receiver:
            with pytest.raises(ForbiddenURLError, match="10.0.0.1"):
                await post_webhook(
                    receiver.url(host="hooks.test"), {}, idempotency_key="k", guard=guard, backoff_s=0.01
                )
            return receiver.requests

    assert len(run(scenario())) == 1


def test_webhook_payload_shapes():
    success = webhook_payload(
        ResultRecord(
            task_uuid="t", index=0, status="success", seed=3, video_uuid="v", video_url="https://f/v.mp4", cost=0.0123
        )
    )
    assert success == {
        "data": [
            {
                "taskType": "videoInference",
                "taskUUID": "t",
                "status": "success",
                "videoUUID": "v",
                "videoURL": "https://f/v.mp4",
                "seed": 3,
                "cost": 0.0123,
            }
        ]
    }
    no_cost = webhook_payload(ResultRecord(task_uuid="t", index=0, status="success", seed=3, video_uuid="v"))
    assert "cost" not in no_cost["data"][0] and "videoURL" not in no_cost["data"][0]
    cancelled = webhook_payload(ResultRecord(task_uuid="t", index=0, status="cancelled"))
    assert cancelled == {"errors": [{"code": "taskCancelled", "message": "the task was cancelled", "taskUUID": "t"}]}
    with pytest.raises(ValueError, match="only finished results"):
        webhook_payload(ResultRecord(task_uuid="t", index=0, status="running"))
    json.dumps(success)  # the payload is plain JSON


def test_docstring_examples():
    assert doctest.testmod(farm.io.delivery).failed == 0
