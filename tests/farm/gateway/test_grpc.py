"""The gRPC face on a real loopback server: real stubs from the generated code, over FakeService (``faces``)."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from farm.v1 import farm_pb2, farm_pb2_grpc
from tests.farm.gateway.faces import faces_fixture, keyed_faces_fixture  # noqa: F401 - fixtures faces, keyed_faces


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


def test_reflection_lists_the_services(faces):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(faces.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"farm.v1.VideoInference", "grpc.health.v1.Health"} <= names


def test_health_is_serving(faces):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(faces.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "farm.v1.VideoInference"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_submit_get_watch_cancel(faces, make_task):
    channel, stub = _stub(faces.grpc_target)
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

        service = faces.service
        video_uuid = str(uuid.uuid4())
        service.finish(task.task_uuid, video_uuid, seed=42, cost=0.5)
        answer = stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=task.task_uuid), timeout=10)
        result = answer.data[0]
        assert (result.status, result.video_uuid, result.seed, result.cost) == ("success", video_uuid, 42, 0.5)
        assert result.video_url == f"{faces.http_base}/v1/videos/{video_uuid}"

        events = list(stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), timeout=10))
        assert [e.kind for e in events] == ["queued", "chunks", "chunks", "chunks", "done"]
        assert [e.chunks_done for e in events if e.kind == "chunks"] == [1, 2, 3]
        assert events[0].queue_position == 1 and events[-1].extra["status"] == "success"

        cancelled = stub.Cancel(farm_pb2.CancelRequest(task_uuid=task.task_uuid), timeout=10)
        assert cancelled.data[0].state == "cancelled" and cancelled.data[0].status == "error"
        assert cancelled.errors[0].code == "taskCancelled"


def test_invalid_task_is_invalid_argument_with_bad_request(faces, make_task):
    channel, stub = _stub(faces.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.Submit(farm_pb2.SubmitRequest(tasks=[_task(make_task, outputQuality=7, numberResults=9)]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad,) = _details(caught.value, error_details_pb2.BadRequest)
    fields = [v.field for v in bad.field_violations]
    assert set(fields) == {"outputQuality", "numberResults"}
    (info,) = _details(caught.value, error_details_pb2.ErrorInfo)
    assert info.reason == "invalidParameter"


def test_batch_submit_reports_per_task_errors(faces, make_task):
    channel, stub = _stub(faces.grpc_target)
    with channel:
        good, bad = _task(make_task), _task(make_task, outputQuality=100)
        answer = stub.Submit(farm_pb2.SubmitRequest(tasks=[good, bad]), timeout=10)
    assert [a.task_uuid for a in answer.data] == [good.task_uuid]
    assert [(e.code, e.parameter, e.task_uuid) for e in answer.errors] == [
        ("invalidParameter", "outputQuality", bad.task_uuid)
    ]


def test_duplicate_unknown_and_full_queue(faces, make_task):
    channel, stub = _stub(faces.grpc_target)
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


def test_api_keys_and_isolation(keyed_faces, make_task):
    channel, stub = _stub(keyed_faces.grpc_target)
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
    assert ("submit", "alice") in keyed_faces.service.calls


def test_upload_asset_stores_the_bytes(faces, tmp_path):
    channel, stub = _stub(faces.grpc_target)
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


def _wait_counted(metrics, method: str, code: str) -> None:
    """The metrics interceptor counts a call just after its status went out: wait for the count."""
    sample = {"method": method, "code": code}
    deadline = time.monotonic() + 5
    while metrics.registry.get_sample_value("farm_grpc_requests_total", sample) != 1:
        assert time.monotonic() < deadline, f"{method} {code} was not counted"
        time.sleep(0.01)


def test_grpc_requests_are_counted(faces, make_task):
    channel, stub = _stub(faces.grpc_target)
    with channel:
        with pytest.raises(grpc.RpcError):
            stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=str(uuid.uuid4())), timeout=10)
        stub.Submit(farm_pb2.SubmitRequest(tasks=[_task(make_task)]), timeout=10)
    _wait_counted(faces.metrics, "GetResponse", "NOT_FOUND")
    _wait_counted(faces.metrics, "Submit", "OK")


# --- requests that do not decode, non-finite numbers (issue 13 item 3) ------------------------------------


def _raw_call(target, method, payload: bytes, **kw):
    """Call ``method`` with raw bytes (no client-side serialisation), as a broken client would."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/farm.v1.VideoInference/{method}")
        return call(payload, timeout=10, **kw)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _nested_value(depth: int) -> bytes:
    """A google.protobuf.Value that is a list inside a list ... ``depth`` times (built as bytes:
    the Python library refuses to build one past its own limit)."""
    value = b"\x11" + b"\x00" * 8  # number_value = 0
    for _ in range(depth):
        value = _length_delimited(6, _length_delimited(1, value))  # Value.list_value.values[0]
    return value


@pytest.mark.parametrize("frame", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_frame_is_invalid_argument_naming_the_field(faces, make_task, frame):
    task = _task(make_task, inputs={"frameImages": [{"image": "https://example.com/a.png", "frame": 1}]})
    task.inputs.frame_images[0].struct_value["frame"] = frame
    channel, stub = _stub(faces.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad,) = _details(caught.value, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["inputs.frameImages[0].frame"]


@pytest.mark.parametrize(
    ("method", "payload", "needle"),
    [
        ("Submit", b"\x0a\xff\xff\xff\xff\x0f", "does not decode as farm.v1.SubmitRequest"),
        ("Submit", _length_delimited(1, _length_delimited(2, b"6f6c7c1a-0d01"))[:-4], "does not decode"),
        ("GetResponse", b"\x0a\x05ab", "does not decode as farm.v1.GetResponseRequest"),
        ("Cancel", b"\xff", "does not decode"),
        (
            "Submit",
            # SubmitRequest.tasks[0].inputs.frameImages[0] = [[[... 150 deep]]]
            _length_delimited(1, _length_delimited(12, _length_delimited(2, _nested_value(150)))),
            "does not decode",
        ),
    ],
    ids=["corrupt", "truncated", "truncated-get", "garbage-cancel", "nested-too-deep"],
)
def test_undecodable_requests_are_invalid_argument(faces, method, payload, needle):
    with pytest.raises(grpc.RpcError) as caught:
        _raw_call(faces.grpc_target, method, payload)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert needle in caught.value.details() and "Error" not in caught.value.details()
    _wait_counted(faces.metrics, method, "INVALID_ARGUMENT")


def test_bad_utf8_is_invalid_argument_naming_the_field(faces, make_task):
    task = _task(make_task, positivePrompt="PROMPT")
    payload = farm_pb2.SubmitRequest(tasks=[task]).SerializeToString().replace(b"PROMPT", b"PR\xffM\xfeT")
    with pytest.raises(grpc.RpcError) as caught:
        _raw_call(faces.grpc_target, "Submit", payload)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == "tasks[0].positivePrompt: string is not valid UTF-8"
    (bad,) = _details(caught.value, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["tasks[0].positivePrompt"]


def test_an_undecodable_upload_chunk_is_invalid_argument(faces, tmp_path):
    with grpc.insecure_channel(faces.grpc_target) as channel:
        upload = channel.stream_unary("/farm.v1.VideoInference/UploadAsset")
        good = farm_pb2.AssetChunk(data=b"abc", content_type="image/png").SerializeToString()
        with pytest.raises(grpc.RpcError) as caught:
            upload(iter([good, b"\x0a\xff\xff"]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    deadline = time.monotonic() + 5
    while list((tmp_path / "assets").glob("*")):  # the partial file goes (just after the status went out)
        assert time.monotonic() < deadline, list((tmp_path / "assets").glob("*"))
        time.sleep(0.01)


# --- bounded requests and answers (issue 13 item 1) -------------------------------------------------------


def test_more_tasks_than_the_cap_are_refused_naming_limit_and_count(faces, make_task):
    channel, stub = _stub(faces.grpc_target)
    tasks = [_task(make_task) for _ in range(101)]
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.Submit(farm_pb2.SubmitRequest(tasks=tasks), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 100 tasks, got 101" in caught.value.details()
    assert faces.service.calls == []


def test_huge_echoes_fit_the_clients_metadata_limit(faces, make_task):
    huge = "u" * (10 * 1024 * 1024)
    channel, stub = _stub(faces.grpc_target)
    with channel:
        with pytest.raises(grpc.RpcError) as caught:
            stub.Submit(farm_pb2.SubmitRequest(tasks=[_task(make_task, taskUUID=huge)]), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(caught.value.details()) <= 512
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=huge), timeout=30)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        many = _task(make_task, inputs={"frameImages": [{"image": "https://example.com/a.png", "frame": 1}]})
        for i in range(2000):
            many.inputs.frame_images[0].struct_value[f"{'k' * 200}{i}"] = i
        many.inputs.frame_images[0].struct_value[huge] = 1
        with pytest.raises(grpc.RpcError) as caught:
            stub.Submit(farm_pb2.SubmitRequest(tasks=[many]), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        (bad,) = _details(caught.value, error_details_pb2.BadRequest)
        assert bad.ByteSize() <= 2600 and "more violation" in bad.field_violations[-1].description
        trailers = sum(len(k) + len(v) for k, v in caught.value.trailing_metadata())
        assert trailers < 6 * 1024

        # In a batch the errors travel in the response body: capped per task all the same.
        answer = stub.Submit(farm_pb2.SubmitRequest(tasks=[many, _task(make_task)]), timeout=30)
    errors = [e for e in answer.errors if e.task_uuid == many.task_uuid]
    assert len(errors) == 21 and "more violation" in errors[-1].message
    assert all(len(e.parameter) <= 131 for e in errors)


# --- UploadAsset refusals (issue 13 item 8) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "needle"),
    [
        ([], "asset is empty"),
        ([farm_pb2.AssetChunk(content_type="image/png")], "asset is empty"),
        ([farm_pb2.AssetChunk(data=b"x", content_type="i" * (1024 * 1024))], "at most 255 characters"),
        ([farm_pb2.AssetChunk(data=b"x", content_type="png")], "must be a media type"),
        ([farm_pb2.AssetChunk(data=b"x", content_type="image/png\r\nx: y")], "must be a media type"),
        ([farm_pb2.AssetChunk(data=b"x", filename="f" * 1000)], "filename"),
    ],
    ids=["no-chunks", "no-bytes", "huge-content-type", "no-subtype", "header-injection", "huge-filename"],
)
def test_upload_asset_refuses_empty_streams_and_bad_content_types(faces, tmp_path, chunks, needle):
    channel, stub = _stub(faces.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.UploadAsset(iter(chunks), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in caught.value.details()
    assert not list((tmp_path / "assets").glob("*"))


def test_upload_asset_takes_a_content_type_with_parameters(faces):
    channel, stub = _stub(faces.grpc_target)
    with channel:
        ack = stub.UploadAsset(iter([farm_pb2.AssetChunk(data=b"x", content_type='audio/ogg; codecs="opus"')]))
    assert ack.content_type == 'audio/ogg; codecs="opus"'


def test_too_large_an_asset_is_resource_exhausted(tmp_path):
    from tests.farm.gateway.conftest import FakeService
    from tests.farm.gateway.faces import Faces

    with Faces(FakeService(), tmp_path / "assets", max_asset_bytes=10) as small:
        channel, stub = _stub(small.grpc_target)
        with channel, pytest.raises(grpc.RpcError) as caught:
            stub.UploadAsset(iter([farm_pb2.AssetChunk(data=b"x" * 11)]), timeout=10)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# --- late failures (issue 13 item 3) ----------------------------------------------------------------------


def test_an_unexpected_exception_is_internal_with_a_short_message(faces, monkeypatch):
    def broken(task_uuid, api_key):
        raise RuntimeError("Traceback ... /var/lib/farm-data/tasks.db")

    monkeypatch.setattr(faces.service, "get", broken)
    channel, stub = _stub(faces.grpc_target)
    with channel, pytest.raises(grpc.RpcError) as caught:
        stub.GetResponse(farm_pb2.GetResponseRequest(task_uuid=str(uuid.uuid4())), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INTERNAL and caught.value.details() == "internal error"


def test_watch_events_keep_their_extra_names(faces, make_task):
    channel, stub = _stub(faces.grpc_target)
    with channel:
        task = _task(make_task)
        stub.Submit(farm_pb2.SubmitRequest(tasks=[task]), timeout=10)
        events = list(stub.Watch(farm_pb2.WatchRequest(task_uuid=task.task_uuid), timeout=10))
    assert json_format.MessageToDict(events[-1])["extra"] == {"status": "success"}


def test_watch_never_streams_a_traceback():
    from farm.domain.records import ProgressEvent, progress_extra
    from farm.gateway.grpc_service import event_message

    leak = 'Traceback (most recent call last):\n  File "/srv/farm/farm/workers/actors.py", line 9\nRayActorError'
    failed = ProgressEvent(task_uuid="t", kind="error", message=leak, extra=progress_extra(code="renderFailed"))
    assert event_message(failed).message == "rendering the result failed"
    invalid = ProgressEvent(
        task_uuid="t",
        kind="error",
        message="inputs.mask: does not decode",
        extra=progress_extra(code="invalidParameter"),
    )
    assert event_message(invalid).message == "inputs.mask: does not decode"
    steps = ProgressEvent(task_uuid="t", kind="steps", extra=progress_extra(steps_done=3, steps_total=40))
    assert json_format.MessageToDict(event_message(steps))["extra"] == {"stepsDone": 3, "stepsTotal": 40}
