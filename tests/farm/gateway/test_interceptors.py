"""Auth, metrics and decoding wrap every call once, on both faces; the handlers only see the caller's key."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from google.protobuf import json_format

from farm.gateway.grpc_service import VideoInferenceServicer, add_services
from farm.gateway.interceptors import caller_key
from farm.gateway.wire import ApiKeys
from farm.v1 import farm_pb2, farm_pb2_grpc
from tests.farm.gateway.conftest import FakeService
from tests.farm.gateway.faces import faces_fixture, keyed_faces_fixture  # noqa: F401 - fixtures faces, keyed_faces


def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_health_and_reflection_need_no_key(keyed_faces):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(keyed_faces.grpc_target) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_every_rpc_is_authenticated_and_counted(keyed_faces, make_task):
    task = json_format.ParseDict(make_task(), farm_pb2.VideoInferenceTask())
    with grpc.insecure_channel(keyed_faces.grpc_target) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        calls = [
            lambda md: stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), metadata=md, timeout=5),
            lambda md: stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), metadata=md, timeout=5),
            lambda md: list(stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), metadata=md, timeout=5)),
            lambda md: stub.Cancel(farm_pb2.CancelRequest(task_uuid=task.task_uuid), metadata=md, timeout=5),
            lambda md: stub.UploadAsset(iter([farm_pb2.AssetChunk(data=b"x")]), metadata=md, timeout=5),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call((("authorization", "Bearer mallory"),))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            call((("authorization", "Bearer alice"),))
    # The servicer saw only the settled key, never the header.
    assert {key for _, key in keyed_faces.service.calls} == {"alice"}
    registry = keyed_faces.metrics.registry
    for method in ("Submit", "GetResponse", "Watch", "Cancel", "UploadAsset"):
        for code, count in (("UNAUTHENTICATED", 1), ("OK", 1)):
            sample = {"method": method, "code": code}
            for _ in range(500):  # counted just after the status went out
                if registry.get_sample_value("farm_grpc_requests_total", sample) == count:
                    break
                asyncio.run(asyncio.sleep(0.01))
            assert registry.get_sample_value("farm_grpc_requests_total", sample) == count, sample


def test_a_server_built_without_the_interceptors_still_checks_keys(make_task):
    """A servicer registered on a bare grpc.aio server falls back to checking the key itself."""

    async def scenario():
        servicer = VideoInferenceServicer(FakeService(), api_keys=ApiKeys(["alice"]))
        server = grpc.aio.server()
        await add_services(server, servicer)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = farm_pb2_grpc.VideoInferenceStub(channel)
                request = farm_pb2.GetResponseRequest(task_uuid=str(uuid.uuid4()))
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.GetResponse(request)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stub.GetResponse(request, metadata=(("authorization", "Bearer alice"),))
                assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            await server.stop(0)

    asyncio.run(scenario())


def test_caller_key_outside_a_call():
    with pytest.raises(LookupError):
        caller_key()


def test_http_routes_that_need_no_key(keyed_faces, tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"video")
    video_uuid = str(uuid.uuid4())
    keyed_faces.artifacts.add(video_uuid, path)
    assert _get(f"{keyed_faces.http_base}/v1/videos/{video_uuid}") == (200, b"video")
    assert _get(f"{keyed_faces.http_base}/healthz")[0] == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [("GET", "/nowhere", 404, "notFound"), ("GET", "/v1", 405, "methodNotAllowed"), ("POST", "/healthz", 405, "methodNotAllowed")],
)  # fmt: skip
def test_aiohttps_own_refusals_answer_in_the_platform_shape(faces, method, path, status, code):
    request = urllib.request.Request(f"{faces.http_base}{path}", data=b"" if method == "POST" else None, method=method)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == status
    assert json.loads(caught.value.read())["errors"][0]["code"] == code


def test_http_metrics_use_route_templates(faces):
    for _ in range(3):
        _get(f"{faces.http_base}/v1/videos/{uuid.uuid4()}")
    _get(f"{faces.http_base}/nowhere/{uuid.uuid4()}")
    registry = faces.metrics.registry
    assert (
        registry.get_sample_value("farm_http_requests_total", {"route": "/v1/videos/{videoUUID}", "code": "404"}) == 3
    )
    routes = {s.labels["route"] for family in registry.collect() for s in family.samples if "route" in s.labels}
    assert routes == {"/v1/videos/{videoUUID}"}  # no raw paths, unmatched paths not counted
