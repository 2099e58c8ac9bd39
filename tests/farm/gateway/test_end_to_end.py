"""The real farm behind the gateway: TaskManager on a real local Ray, real files, real HTTP.

submit (gRPC) -> Watch streams progress in order -> poll GetResponse -> download videoURL over
HTTP (Range too) and decode it; the JSON face and a webhook receiver see the same result.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import grpc
import pytest
from aiohttp import web
from google.protobuf import json_format

from farm.v1 import farm_pb2, farm_pb2_grpc
from tests.farm.gateway.conftest import GatewayThread
from tests.media import probe

pytest.importorskip("farm.scheduler.manager")

pytestmark = pytest.mark.slow

SMALL = {
    "width": 256,
    "height": 144,
    "resolution": None,
    "duration": 3,
    "outputFormat": "MP4",
    "settings": {"audio": False, "promptExtend": False},
}


class Receiver:
    """Real HTTP receivers on loopback: POST /hook (fails the first ``fail_first`` calls), PUT /put."""

    def __init__(self, fail_first: int = 0):
        self.calls: list[tuple[dict, dict]] = []
        self.uploads: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.loop = None
        self.port = None
        self._ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)

    def _run(self):
        import asyncio

        async def hook(request):
            self.calls.append((dict(request.headers), await request.json()))
            if len(self.calls) <= self.fail_first:
                return web.Response(status=503)
            return web.Response(status=200)

        async def main():
            app = web.Application()
            app.router.add_post("/hook", hook)

            async def put(request):
                self.uploads.append((dict(request.headers), await request.read()))
                return web.Response(status=200)

            app.router.add_put("/put", put)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = runner.addresses[0][1]
            self._ready.set()
            await asyncio.Event().wait()

        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(main())


@pytest.fixture
def farm_gateway(tmp_path, ray_cluster):
    from farm.gateway.server import Gateway, GatewayConfig

    config = GatewayConfig(
        grpc_port=0,
        http_port=0,
        host="127.0.0.1",
        data_dir=str(tmp_path / "data"),
        workers=2,
        allow_urls=["127.0.0.1"],
        price_per_gpu_second=0.001,
    )
    with GatewayThread(Gateway(config)) as running:
        yield running


def test_submit_watch_poll_download_decode(farm_gateway, make_task, tmp_path):
    receiver = Receiver(fail_first=2)
    raw = make_task(
        **SMALL,
        includeCost=True,
        webhookURL=f"http://127.0.0.1:{receiver.port}/hook",
        uploadEndpoint=f"http://127.0.0.1:{receiver.port}/put",
    )
    raw.pop("resolution")
    task = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
    with grpc.insecure_channel(farm_gateway.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        ack = stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=30)
        assert ack.data[0].task_uuid == task.task_uuid

        events = list(stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), timeout=300))
        kinds = [e.kind for e in events]
        assert kinds[0] in ("queued", "running") and kinds[-1] == "done", kinds
        assert "result" in kinds and kinds.index("result") < kinds.index("done")
        chunks = [(e.chunks_done, e.chunks_total) for e in events if e.kind == "chunks"]
        assert chunks and [d for d, _ in chunks] == sorted(d for d, _ in chunks)  # in order
        assert chunks[-1][0] == chunks[-1][1]
        steps = [json_format.MessageToDict(e.extra) for e in events if e.kind == "steps"]
        done = [int(x["stepsDone"]) for x in steps]
        assert done == sorted(done) and all(0 < int(x["stepsTotal"]) for x in steps)

        deadline = time.time() + 60
        while True:
            answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=30)
            if all(r.status != "processing" for r in answer.data) or time.time() > deadline:
                break
            time.sleep(0.2)
    (result,) = answer.data
    assert result.status == "success" and result.video_uuid and result.HasField("seed")
    assert result.HasField("cost") and result.cost >= 0
    assert result.video_url == f"{farm_gateway.http_base}/v1/videos/{result.video_uuid}"

    with urllib.request.urlopen(result.video_url, timeout=30) as response:
        assert response.headers["Content-Type"] == "video/mp4"
        body = response.read()
    path = tmp_path / "download.mp4"
    path.write_bytes(body)
    info = probe(path)
    assert (info.width, info.height) == (256, 144) and info.frames == 96 and info.video_codec == "h264"
    ranged = urllib.request.Request(result.video_url, headers={"Range": "bytes=0-99"})
    with urllib.request.urlopen(ranged, timeout=30) as response:
        assert response.status == 206 and response.read() == body[:100]

    # The JSON face answers the same result.
    request = urllib.request.Request(
        f"{farm_gateway.http_base}/v1",
        method="POST",
        data=json.dumps([{"taskType": "getResponse", "taskUUID": raw["taskUUID"]}]).encode(),
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        (item,) = json.loads(response.read())["data"]
    assert item["videoURL"] == result.video_url and item["seed"] == result.seed

    # The webhook: retried after two 503s, same idempotency key each time, platform-shaped body.
    deadline = time.time() + 60
    while len(receiver.calls) < 3 and time.time() < deadline:
        time.sleep(0.2)
    assert len(receiver.calls) == 3
    keys = {headers.get("Idempotency-Key") for headers, _ in receiver.calls}
    assert len(keys) == 1 and None not in keys
    assert receiver.calls[-1][1]["data"][0]["videoURL"] == result.video_url
    with grpc.insecure_channel(farm_gateway.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        deadline = time.time() + 30
        while time.time() < deadline:
            answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=30)
            if answer.data[0].webhook_status == "delivered" and answer.data[0].upload_status == "delivered":
                break
            time.sleep(0.2)
    assert answer.data[0].webhook_status == "delivered"
    # The upload: the raw file bytes, PUT once, with the video's content type.
    assert answer.data[0].upload_status == "delivered"
    ((headers, uploaded),) = receiver.uploads
    assert uploaded == body and headers["Content-Type"] == "video/mp4"


def test_refused_webhook_url_names_the_field(farm_gateway, make_task):
    raw = make_task(**SMALL, webhookURL="http://10.1.2.3/hook")
    raw.pop("resolution")
    with grpc.insecure_channel(farm_gateway.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Submit(
                farm_pb2.SubmitRequest(tasks=[json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())]), timeout=30
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "webhookURL" in caught.value.details()
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    bad = error_details_pb2.BadRequest()
    (detail,) = [d for d in rpc_status.from_call(caught.value).details if d.Is(bad.DESCRIPTOR)]
    detail.Unpack(bad)
    assert [v.field for v in bad.field_violations] == ["webhookURL"]


def test_restart_mid_job_then_the_task_finishes(tmp_path, ray_cluster, make_task):
    """A gateway stopped while rendering; a new one on the same data dir answers and finishes it."""
    from farm.gateway.server import Gateway, GatewayConfig

    config = GatewayConfig(grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(tmp_path / "data"), workers=1)
    raw = make_task(**SMALL)
    raw.pop("resolution")
    task = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
    with GatewayThread(Gateway(config)) as first:
        with grpc.insecure_channel(first.grpc_target) as channel:
            stub = farm_pb2_grpc.VideoInferenceStub(channel)
            stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=30)
            for event in stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), timeout=300):
                if event.kind == "chunks":
                    break  # rendering has started: stop the gateway under it
    with GatewayThread(Gateway(config)) as second:
        with grpc.insecure_channel(second.grpc_target) as channel:
            stub = farm_pb2_grpc.VideoInferenceStub(channel)
            answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=30)
            assert answer.data and answer.data[0].task_uuid == task.task_uuid
            deadline = time.time() + 300
            while time.time() < deadline:
                answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=30)
                if all(r.status != "processing" for r in answer.data):
                    break
                time.sleep(0.5)
    assert [r.status for r in answer.data] == ["success"], answer


def test_cancel_frees_the_workers_and_isolation_between_keys(tmp_path, ray_cluster, make_task):
    """Cancel mid-render ends Watch with 'cancelled'; the next task renders; keys see only their tasks."""
    from farm.gateway.server import Gateway, GatewayConfig

    config = GatewayConfig(
        grpc_port=0,
        http_port=0,
        host="127.0.0.1",
        data_dir=str(tmp_path / "data"),
        workers=1,
        api_keys=["alice", "bob"],
    )
    alice, bob = (("authorization", "Bearer alice"),), (("authorization", "Bearer bob"),)
    first, second = (make_task(**SMALL) for _ in range(2))
    for raw in (first, second):
        raw.pop("resolution")
    first["duration"] = 15  # long enough to be cancelled while rendering
    with GatewayThread(Gateway(config)) as running, grpc.insecure_channel(running.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        message = json_format.ParseDict(first, farm_pb2.VideoInferenceTask())
        stub.Submit(farm_pb2.SubmitRequest(tasks=[message]), metadata=alice, timeout=30)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=first["taskUUID"]), metadata=bob, timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:
            stub.Cancel(farm_pb2.CancelRequest(task_uuid=first["taskUUID"]), metadata=bob, timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        kinds = []
        for event in stub.Watch(farm_pb2.WatchRequest(task_uuid=first["taskUUID"]), metadata=alice, timeout=300):
            kinds.append(event.kind)
            if event.kind == "chunks" and "cancel-sent" not in kinds:
                kinds.append("cancel-sent")
                stub.Cancel(farm_pb2.CancelRequest(task_uuid=first["taskUUID"]), metadata=alice, timeout=30)
        assert kinds[-1] == "cancelled", kinds
        answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=first["taskUUID"]), metadata=alice, timeout=30)
        assert {r.state for r in answer.data} == {"cancelled"} and answer.errors[0].code == "taskCancelled"

        # The workers are free again: bob's task renders to the end.
        message = json_format.ParseDict(second, farm_pb2.VideoInferenceTask())
        stub.Submit(farm_pb2.SubmitRequest(tasks=[message]), metadata=bob, timeout=30)
        events = list(stub.Watch(farm_pb2.WatchRequest(task_uuid=second["taskUUID"]), metadata=bob, timeout=300))
        assert events[-1].kind == "done", [e.kind for e in events]


def test_500_submissions_from_50_clients_none_lost(tmp_path, ray_cluster, make_task):
    """Every submission is acknowledged or refused with RESOURCE_EXHAUSTED; every ack can be polled."""
    from concurrent.futures import ThreadPoolExecutor

    from farm.gateway.server import Gateway, GatewayConfig

    config = GatewayConfig(
        grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(tmp_path / "data"), workers=1, max_queue=40
    )
    tasks = [make_task(**SMALL) for _ in range(500)]
    for raw in tasks:
        raw.pop("resolution")

    def client(batch):
        outcomes = []
        with grpc.insecure_channel(target) as channel:
            stub = farm_pb2_grpc.VideoInferenceStub(channel)
            for raw in batch:
                message = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
                try:
                    ack = stub.Submit(farm_pb2.SubmitRequest(tasks=[message]), timeout=60)
                    outcomes.append((raw["taskUUID"], "ack" if ack.data[0].task_uuid == raw["taskUUID"] else "bad"))
                except grpc.RpcError as error:
                    outcomes.append((raw["taskUUID"], error.code().name))
        return outcomes

    with GatewayThread(Gateway(config)) as running:
        target = running.grpc_target
        with ThreadPoolExecutor(50) as pool:
            outcomes = [o for batch in pool.map(client, [tasks[i::50] for i in range(50)]) for o in batch]
        assert len(outcomes) == 500
        assert {kind for _, kind in outcomes} <= {"ack", "RESOURCE_EXHAUSTED"}, outcomes
        acked = [task_uuid for task_uuid, kind in outcomes if kind == "ack"]
        # The queue bound, plus whatever left the queue to render during the burst.
        assert 40 <= len(acked) < 500
        with grpc.insecure_channel(target) as channel:
            stub = farm_pb2_grpc.VideoInferenceStub(channel)
            for task_uuid in acked:
                answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task_uuid), timeout=30)
                assert answer.data[0].task_uuid == task_uuid


def test_cli_submit_wait_against_the_real_farm(farm_gateway, make_task, tmp_path, capsys):
    from farm.cli.main import main

    raw = make_task(**SMALL, numberResults=2)
    raw.pop("resolution")
    path = tmp_path / "task.json"
    path.write_text(json.dumps(raw))
    assert main(["submit", str(path), "--server", farm_gateway.grpc_target, "--wait"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.out.splitlines() if line.startswith(raw["taskUUID"])]
    assert len(lines) == 2 and all("success" in line and "/v1/videos/" in line for line in lines), captured.out
    assert "chunk" in captured.err  # the progress bar


def _wait_done(stub, task_uuid: str, seconds: float = 300):
    deadline = time.time() + seconds
    while True:
        answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task_uuid), timeout=30)
        if (
            (answer.data and all(r.status != "processing" for r in answer.data))
            or answer.errors
            or time.time() > deadline
        ):
            return answer
        time.sleep(0.3)


def test_conditioned_tasks_through_the_gateway_uploaded_asset_url_and_extending_a_result(
    farm_gateway, make_task, tmp_path
):
    """An uploaded portrait image as the first frame, a reference image by loopback URL and the
    prompt extended; then that result (by its videoUUID) extended by a second task."""
    import io

    from PIL import Image

    def png(color, size) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", size, color).save(buffer, "PNG")
        return buffer.getvalue()

    from tests.farm.io.test_media import serving, static

    with (
        serving({"/ref.png": static(png("teal", (64, 64)), "image/png")}) as base,
        grpc.insecure_channel(farm_gateway.grpc_target) as channel,
    ):
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        asset = stub.UploadAsset(
            iter([farm_pb2.AssetChunk(data=png("red", (1080, 1920)), content_type="image/png")]), timeout=30
        )
        first = make_task(
            resolution="1080p",
            duration=3,
            positivePrompt="@hero walks into the light",
            settings={"audio": False, "promptExtend": True},
            inputs={
                "frameImages": [asset.asset_uuid],
                "referenceImages": [{"type": "image", "tag": "@hero", "images": [f"{base}/ref.png"]}],
            },
        )
        stub.Submit(
            farm_pb2.SubmitRequest(tasks=[json_format.ParseDict(first, farm_pb2.VideoInferenceTask())]), timeout=30
        )
        (result,) = _wait_done(stub, first["taskUUID"]).data
        assert result.status == "success", result
        assert result.extended_prompt.startswith("@hero walks into the light") and len(result.extended_prompt) > len(
            first["positivePrompt"]
        )
        with urllib.request.urlopen(result.video_url, timeout=60) as response:
            (tmp_path / "first.mp4").write_bytes(response.read())
        info = probe(tmp_path / "first.mp4")
        assert (info.width, info.height, info.frames) == (1080, 1920, 96), "portrait, like the frame image"

        second = make_task(
            resolution="480p",
            duration=3,
            positivePrompt="@clip keeps going",
            settings={"audio": False, "promptExtend": False},
            inputs={"referenceVideos": [{"type": "extend", "tag": "@clip", "video": result.video_uuid}]},
        )
        stub.Submit(
            farm_pb2.SubmitRequest(tasks=[json_format.ParseDict(second, farm_pb2.VideoInferenceTask())]), timeout=30
        )
        (extended,) = _wait_done(stub, second["taskUUID"]).data
        assert extended.status == "success", extended
        assert not extended.extended_prompt
        with urllib.request.urlopen(extended.video_url, timeout=60) as response:
            (tmp_path / "second.mp4").write_bytes(response.read())
    info = probe(tmp_path / "second.mp4")
    assert (info.width, info.height, info.frames, info.fps) == (480, 848, 96, 32)


def test_a_task_failing_on_its_media_still_calls_its_webhook_with_the_error(farm_gateway, make_task):
    import base64

    receiver = Receiver()
    corrupt = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    raw = make_task(**SMALL, webhookURL=f"http://127.0.0.1:{receiver.port}/hook", inputs={"frameImages": [corrupt]})
    raw.pop("resolution")
    with grpc.insecure_channel(farm_gateway.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        stub.Submit(
            farm_pb2.SubmitRequest(tasks=[json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())]), timeout=30
        )
        answer = _wait_done(stub, raw["taskUUID"], 60)
    assert answer.data[0].status == "error"
    assert answer.errors[0].parameter == "inputs.frameImages[0]"
    deadline = time.time() + 30
    while not receiver.calls and time.time() < deadline:
        time.sleep(0.1)
    ((headers, body),) = receiver.calls
    assert headers.get("Idempotency-Key")
    (error,) = body["errors"]
    assert error["taskUUID"] == raw["taskUUID"] and error["parameter"] == "inputs.frameImages[0]"
