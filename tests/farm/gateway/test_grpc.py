"""The gRPC face on a real loopback server: real stubs from the generated code, over FakeService."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from farm.v1 import farm_pb2, farm_pb2_grpc


def _stub(target):
    channel = grpc.insecure_channel(target)
    return channel, farm_pb2_grpc.VideoInferenceStub(channel)


def _task(make_task, **overrides) -> farm_pb2.VideoInferenceTask:
    return json_format.ParseDict(make_task(**overrides), farm_pb2.VideoInferenceTask())


def _details(error: grpc.RpcError, kind):
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status in the trailers"
    found = []
    for detail in status.details:
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def test_reflection_lists_the_services(fake_gateway):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(fake_gateway.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"farm.v1.VideoInference", "grpc.health.v1.Health"} <= names


def test_health_is_serving(fake_gateway):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(fake_gateway.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "farm.v1.VideoInference"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_submit_get_watch_cancel(fake_gateway, make_task):
    channel, stub = _stub(fake_gateway.grpc_target)
    with channel:
        task = _task(make_task)
        ack = stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=10)
        assert [(a.task_type, a.task_uuid) for a in ack.data] == [("videoInference", task.task_uuid)]
        assert not ack.errors

        # Same UUID, same body: the first acknowledgement again.
        again = stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=10)
        assert again.data[0].task_uuid == task.task_uuid

        answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=10)
        assert answer.data[0].status == "processing" and answer.data[0].state == "queued"

        service = fake_gateway.gateway.service
        video_uuid = str(uuid.uuid4())
        service.finish(task.task_uuid, video_uuid, seed=42, cost=0.5)
        answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=10)
        result = answer.data[0]
        assert (result.status, result.video_uuid, result.seed, result.cost) == ("success", video_uuid, 42, 0.5)
        assert result.video_url == f"{fake_gateway.http_base}/v1/videos/{video_uuid}"

        events = list(stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), timeout=10))
        assert [e.kind for e in events] == ["queued", "chunks", "chunks", "chunks", "done"]
        assert [e.chunks_done for e in events if e.kind == "chunks"] == [1, 2, 3]
        assert events[0].queue_position == 1 and events[-1].extra["status"] == "success"

        cancelled = stub.Cancel(farm_pb2.CancelRequest(task_uuid=task.task_uuid), timeout=10)
        assert cancelled.data[0].state == "cancelled" and cancelled.data[0].status == "error"
        assert cancelled.errors[0].code == "taskCancelled"


def test_invalid_task_is_invalid_argument_with_bad_request(fake_gateway, make_task):
    channel, stub = _stub(fake_gateway.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.Submit(farm_pb2.SubmitRequest(tasks=[_task(make_task, outputQuality=7, numberResults=9)]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad,) = _details(caught.value, error_details_pb2.BadRequest)
    fields = [v.field for v in bad.field_violations]
    assert set(fields) == {"outputQuality", "numberResults"}
    (info,) = _details(caught.value, error_details_pb2.ErrorInfo)
    assert info.reason == "invalidParameter"


def test_batch_submit_reports_per_task_errors(fake_gateway, make_task):
    channel, stub = _stub(fake_gateway.grpc_target)
    with channel:
        good, bad = _task(make_task), _task(make_task, outputQuality=100)
        answer = stub.Submit(farm_pb2.SubmitRequest(tasks=[good, bad]), timeout=10)
    assert [a.task_uuid for a in answer.data] == [good.task_uuid]
    assert [(e.code, e.parameter, e.task_uuid) for e in answer.errors] == [
        ("invalidParameter", "outputQuality", bad.task_uuid)
    ]


def test_duplicate_unknown_and_full_queue(fake_gateway, make_task):
    channel, stub = _stub(fake_gateway.grpc_target)
    with channel:
        task = _task(make_task)
        stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=10)
        other = farm_pb2.VideoInferenceTask()
        other.CopyFrom(task)
        other.positive_prompt = "something else entirely"
        with pytest.raises(grpc.RpcError) as caught:
            stub.Submit(farm_pb2.SubmitRequest(tasks=[other]), timeout=10)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

        with pytest.raises(grpc.RpcError) as caught:
            stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=str(uuid.uuid4())), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        for _ in range(2):  # the fake's queue holds 3
            stub.Submit(farm_pb2.SubmitRequest(tasks=[_task(make_task)]), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Submit(farm_pb2.SubmitRequest(tasks=[_task(make_task)]), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        (retry,) = _details(caught.value, error_details_pb2.RetryInfo)
        assert retry.retry_delay.ToNanoseconds() == 2_500_000_000


def test_api_keys_and_isolation(keyed_gateway, make_task):
    channel, stub = _stub(keyed_gateway.grpc_target)
    with channel:
        task = _task(make_task)
        request = farm_pb2.SubmitRequest(tasks=[task])
        for metadata in ((), (("authorization", "Bearer mallory"),), (("authorization", "alice"),)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.Submit(request, metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stub.Submit(request, metadata=(("authorization", "Bearer alice"),), timeout=10)
        get = farm_pb2.GetResponseRequest(task_uuid=task.task_uuid)
        stub.GetResponse(get, metadata=(("authorization", "Bearer alice"),), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetResponse(get, metadata=(("authorization", "Bearer bob"),), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert ("submit", "alice") in keyed_gateway.gateway.service.calls


def test_upload_asset_stores_the_bytes(fake_gateway, tmp_path):
    channel, stub = _stub(fake_gateway.grpc_target)
    payload = bytes(range(256)) * 1000
    chunks = [
        farm_pb2.AssetChunk(data=payload[:100_000], content_type="image/png", filename="a.png"),
        farm_pb2.AssetChunk(data=payload[100_000:]),
    ]
    with channel:
        ack = stub.UploadAsset(iter(chunks), timeout=10)
    uuid.UUID(ack.asset_uuid)
    assert (ack.size, ack.content_type) == (len(payload), "image/png")
    assert (tmp_path / "assets" / ack.asset_uuid).read_bytes() == payload


def test_grpc_requests_are_counted(fake_gateway, make_task):
    channel, stub = _stub(fake_gateway.grpc_target)
    with channel:
        with pytest.raises(grpc.RpcError):
            stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=str(uuid.uuid4())), timeout=10)
    body, _ = fake_gateway.gateway.metrics.exposition()
    assert b'method="GetResponse"' in body and b"NOT_FOUND" in body
