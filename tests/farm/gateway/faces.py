"""The two faces alone on loopback, over a fake TaskService: no Ray, no store, no ``Gateway``.

``Faces`` runs the gRPC server (``create_server``: interceptors included) and the aiohttp app
(``make_app``: middlewares included) on one event loop in a background thread, exactly as the
gateway wires them, so tests use ordinary blocking clients. Import the fixtures into a test module:

    from tests.farm.gateway.faces import faces_fixture, keyed_faces_fixture  # noqa: F401 - fixtures ``faces``, ``keyed_faces``
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from farm.gateway.grpc_service import AssetSink, VideoInferenceServicer, add_services, create_server
from farm.gateway.http_app import RestFace, make_app
from farm.gateway.metrics import FarmMetrics
from farm.gateway.wire import ApiKeys
from farm.io.artifacts import ArtifactExpired, ArtifactNotFound
from tests.farm.gateway.conftest import FakeService


@dataclasses.dataclass
class FakeArtifact:
    path: Path
    content_type: str
    size: int
    expires_at: float | None = None


class FakeArtifacts:
    """Artifacts in a dict; raises the real store's error classes."""

    def __init__(self):
        self.items: dict[str, FakeArtifact] = {}
        self.expired: set[str] = set()

    def add(self, video_uuid: str, path: Path, content_type: str = "video/mp4") -> FakeArtifact:
        artifact = FakeArtifact(path, content_type, path.stat().st_size)
        self.items[video_uuid] = artifact
        return artifact

    def get(self, video_uuid):
        if video_uuid in self.expired:
            raise ArtifactExpired(f"video {video_uuid} expired")
        if video_uuid not in self.items:
            raise ArtifactNotFound(f"video {video_uuid} not found")
        return self.items[video_uuid]


class Faces:
    """gRPC + HTTP faces over ``service`` on free loopback ports, in a thread with its own loop."""

    def __init__(
        self,
        service: Any,
        assets_dir: Path,
        *,
        api_keys: list[str] | None = None,
        max_tasks_per_request: int = 100,
        max_request_bytes: int = 64 * 1024 * 1024,
        max_asset_bytes: int = 50 * 1024 * 1024,
    ):
        self.service = service
        self.artifacts = FakeArtifacts()
        self.metrics = FarmMetrics()
        keys = ApiKeys(api_keys or ())
        self.servicer = VideoInferenceServicer(
            service,
            api_keys=keys,
            metrics=self.metrics,
            assets=AssetSink(assets_dir, max_asset_bytes),
            max_tasks_per_request=max_tasks_per_request,
        )
        self.rest = RestFace(
            service,
            api_keys=keys,
            artifacts=self.artifacts,
            metrics=self.metrics,
            max_tasks_per_request=max_tasks_per_request,
        )
        self.max_request_bytes = max_request_bytes
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.grpc_port = self.http_port = 0

    async def _start(self) -> None:
        options = [
            ("grpc.max_receive_message_length", self.max_request_bytes),
            ("grpc.max_send_message_length", self.max_request_bytes),
        ]
        self._grpc = create_server(self.servicer, options=options)
        await add_services(self._grpc, self.servicer)
        self.grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        await self._grpc.start()
        self._runner = web.AppRunner(make_app(self.rest, max_request_bytes=self.max_request_bytes), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.http_port = self._runner.addresses[0][1]
        base = f"http://127.0.0.1:{self.http_port}"
        self.servicer.public_base_url = self.rest.public_base_url = base

    async def _stop(self) -> None:
        await self._grpc.stop(0.5)
        await self._runner.cleanup()

    def __enter__(self) -> Faces:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(60)
        return self

    def __exit__(self, *exc) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@pytest.fixture(name="faces")
def faces_fixture(tmp_path):
    """Both faces over ``FakeService`` (queue of 3), keys off, real FarmMetrics, fake artifacts."""
    with Faces(FakeService(max_queue=3), tmp_path / "assets") as running:
        yield running


@pytest.fixture(name="keyed_faces")
def keyed_faces_fixture(tmp_path):
    """Both faces over ``FakeService`` requiring the keys ``alice`` or ``bob``."""
    with Faces(FakeService(), tmp_path / "assets", api_keys=["alice", "bob"]) as running:
        yield running
