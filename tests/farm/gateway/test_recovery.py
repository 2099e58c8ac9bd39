"""What a gateway restart must not lose, and what a task's media inputs do on the way to the render.

- Uploads and webhooks left ``pending`` by the previous process are delivered on start, to real
  HTTP receivers on loopback, with the same idempotency key.
- A task whose frame image is another key's uploaded asset, or another key's result, fails with
  ``invalidParameter`` naming ``inputs.frameImages[0]...`` in GetResponse, as an unknown UUID does
  (real gRPC, a real ``TaskManager`` and scheduler core, the real ``MediaResolver``: the
  ``FakeExecutor`` resolves media inputs as the real preparation does and renders nothing).
- A corrupt frame image (valid base64 of a broken PNG) fails the same way.
"""

from __future__ import annotations

import dataclasses
import time

import grpc
import pytest

from farm.domain.records import ResultRecord
from farm.scheduler.store import TaskStore
from farm.v1 import farm_pb2, farm_pb2_grpc
from tests.farm.gateway.conftest import GatewayThread
from tests.farm.gateway.test_end_to_end import Receiver


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s")


def test_deliveries_cut_off_by_a_restart_are_retried_on_start(tmp_path, ray_cluster, make_task):
    from farm.gateway.server import Gateway, GatewayConfig
    from farm.scheduler.manager import canonical_body

    receiver = Receiver()
    base = f"http://127.0.0.1:{receiver.port}"
    data = tmp_path / "data"
    video = tmp_path / "left-behind.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42 rendered before the crash")

    # What the previous gateway left: a result stored as success whose upload and webhook were
    # still pending when it died, and a second task whose webhook had already been delivered.
    store = TaskStore(data / "tasks.db")
    pending = make_task(webhookURL=f"{base}/hook", uploadEndpoint=f"{base}/put")
    done = make_task(webhookURL=f"{base}/hook")
    for task in (pending, done):
        store.insert_task(task["taskUUID"], None, canonical_body(task), base_seed=5, seeds=[5], status="success")
        store.update_task_status(task["taskUUID"], "success")
    store.upsert_result(
        ResultRecord(
            task_uuid=pending["taskUUID"],
            index=0,
            status="success",
            seed=5,
            video_uuid="v-pending",
            progress=1.0,
            upload_status="pending",
            webhook_status="pending",
        ),
        path=video,
    )
    store.upsert_result(
        ResultRecord(
            task_uuid=done["taskUUID"],
            index=0,
            status="success",
            seed=5,
            video_uuid="v-done",
            progress=1.0,
            webhook_status="delivered",
        ),
        path=video,
    )
    store.close()

    config = GatewayConfig(
        grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(data), workers=1, allow_urls=["127.0.0.1"]
    )
    with GatewayThread(Gateway(config)) as running:
        record = wait_for(
            lambda: (
                (r := running.gateway.manager.get(pending["taskUUID"], None).results[0]).webhook_status == "delivered"
                and r
            )
        )
        assert record.upload_status == "delivered"
    assert [body for _, body in receiver.uploads] == [video.read_bytes()]
    assert len(receiver.calls) == 1  # the already-delivered webhook is not sent again
    headers, body = receiver.calls[0]
    assert headers["Idempotency-Key"] == f"{pending['taskUUID']}:0"
    (item,) = body["data"]
    assert (item["taskUUID"], item["videoUUID"], item["status"]) == (pending["taskUUID"], "v-pending", "success")
    assert item["videoURL"].endswith("/v1/videos/v-pending")


@dataclasses.dataclass
class MediaGateway:
    running: GatewayThread
    manager: object
    artifacts: object

    @property
    def grpc_target(self) -> str:
        return self.running.grpc_target


@pytest.fixture
def media_gateway(tmp_path):
    """A keyed gateway (alice, bob) over a real ``TaskManager``: a ``SchedulerCore`` on a
    ``FakeExecutor`` that resolves each task's media inputs for real (as its owner, from the
    manager's ``MediaConfig``), a real artifact store for the results."""
    from farm.gateway.server import Gateway, GatewayConfig, GuardedService
    from farm.io.artifacts import LocalArtifactStore
    from farm.io.urlguard import UrlGuard
    from farm.render.executor import MediaConfig
    from farm.scheduler.actor import LocalClient, SchedulerHost
    from farm.scheduler.core import SchedulerConfig, SchedulerCore
    from farm.scheduler.manager import TaskManager
    from farm.scheduler.pools import PoolPolicy
    from tests.farm.scheduler.fakes import MODEL, FakeExecutor, fake_profile

    data = tmp_path / "data"
    artifacts = LocalArtifactStore(data / "artifacts")
    config = SchedulerConfig(default_pool=PoolPolicy(max_workers=1))
    host = SchedulerHost(SchedulerCore(FakeExecutor(resolve_media=True), {MODEL: fake_profile()}, config), 0.05)
    manager = TaskManager(
        TaskStore(data / "tasks.db"),
        scheduler=LocalClient(host),
        out_dir=data / "out",
        artifacts=artifacts,
        media=MediaConfig(
            allow_urls=("127.0.0.1",), assets_dir=str(data / "assets"), artifacts_dir=str(data / "artifacts")
        ),
    )
    manager.start()
    config = GatewayConfig(grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(data), api_keys=["alice", "bob"])
    guard = UrlGuard(["127.0.0.1"])
    with GatewayThread(Gateway(config, service=GuardedService(manager, guard), artifacts=artifacts)) as running:
        yield MediaGateway(running, manager, artifacts)
    manager.stop(timeout=5, shutdown_scheduler=True)


def _request(task: dict) -> farm_pb2.SubmitRequest:
    from google.protobuf import json_format

    message = {k: v for k, v in task.items() if k != "taskType"}
    return farm_pb2.SubmitRequest(tasks=[json_format.ParseDict(message, farm_pb2.VideoInferenceTask())])


def _frame_task(make_task, image: str) -> tuple[dict, farm_pb2.SubmitRequest]:
    task = make_task(inputs={"frameImages": [{"image": image, "frame": "first"}]})
    return task, _request(task)


def _poll_error(stub, task_uuid, key):
    def failed():
        response = stub.GetResponse(
            farm_pb2.GetResponseRequest(task_uuid=task_uuid), metadata=[("authorization", f"Bearer {key}")]
        )
        return response if response.errors else None

    return wait_for(failed, timeout=30)


def test_another_keys_asset_as_a_frame_image_fails_naming_the_field(media_gateway, make_task):
    with grpc.insecure_channel(media_gateway.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        png = _png()
        ack = stub.UploadAsset(
            iter([farm_pb2.AssetChunk(data=png, content_type="image/png")]),
            metadata=[("authorization", "Bearer alice")],
        )
        task, request = _frame_task(make_task, ack.asset_uuid)
        stub.Submit(request, metadata=[("authorization", "Bearer bob")])
        response = _poll_error(stub, task["taskUUID"], "bob")
    (error,) = response.errors
    assert error.code == "invalidParameter"
    assert error.parameter.startswith("inputs.frameImages[0]")
    assert "no uploaded asset" in error.message
    assert response.data[0].status == "error"


def _auth(key: str):
    return [("authorization", f"Bearer {key}")]


def test_another_keys_result_as_a_frame_image_fails_as_an_unknown_uuid(media_gateway, make_task):
    """A result is an input for its owner's tasks only: bob naming alice's videoUUID hears what an
    unknown UUID gets; alice's own task fetches the file (and fails only at decoding it, since the
    fake finisher writes no real video)."""
    with grpc.insecure_channel(media_gateway.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        source = make_task()
        stub.Submit(_request(source), metadata=_auth("alice"))
        done = wait_for(
            lambda: (
                (
                    r := stub.GetResponse(
                        farm_pb2.GetResponseRequest(task_uuid=source["taskUUID"]), metadata=_auth("alice")
                    )
                )
                .data[0]
                .status
                == "success"
                and r
            )
        )
        video_uuid = done.data[0].video_uuid
        assert media_gateway.artifacts.get(video_uuid).visible_to("alice")

        answers = {}
        for key in ("bob", "alice"):
            task, request = _frame_task(make_task, video_uuid)
            stub.Submit(request, metadata=_auth(key))
            answers[key] = _poll_error(stub, task["taskUUID"], key).errors[0]
        unknown_task, request = _frame_task(make_task, "0b7e6f0e-1b1e-4c39-9d2b-3c3b3f6d7a10")
        stub.Submit(request, metadata=_auth("bob"))
        unknown = _poll_error(stub, unknown_task["taskUUID"], "bob").errors[0]
    assert answers["bob"].parameter.startswith("inputs.frameImages[0]")
    assert answers["bob"].message.replace(video_uuid, "<uuid>") == unknown.message.replace(
        "0b7e6f0e-1b1e-4c39-9d2b-3c3b3f6d7a10", "<uuid>"
    )
    assert "visible to this API key" in answers["bob"].message
    assert "visible to this API key" not in answers["alice"].message  # alice's own result was read


def test_a_corrupt_base64_frame_image_fails_naming_the_field(media_gateway, make_task):
    import base64

    with grpc.insecure_channel(media_gateway.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        corrupt = base64.b64encode(_png()[:40] + b"\x00" * 64).decode()
        task, request = _frame_task(make_task, corrupt)
        stub.Submit(request, metadata=[("authorization", "Bearer alice")])
        response = _poll_error(stub, task["taskUUID"], "alice")
    (error,) = response.errors
    assert error.code == "invalidParameter"
    assert error.parameter.startswith("inputs.frameImages[0]")


def _png() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()
