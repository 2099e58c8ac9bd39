"""The JSON/REST face on a real loopback server, over FakeService (``faces``: the face alone)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.farm.gateway.faces import faces_fixture, keyed_faces_fixture  # noqa: F401 - fixtures faces, keyed_faces


def _request(url, body=None, *, method=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method or ("POST" if data else "GET"),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def _post(base, tasks, **kw):
    status, headers, body = _request(f"{base}/v1", tasks, **kw)
    return status, headers, json.loads(body)


def test_submit_then_get_response_in_the_platform_shape(faces, make_task):
    task = make_task()
    status, _, answer = _post(faces.http_base, [task])
    assert status == 200
    assert answer == {"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]}

    video_uuid = str(uuid.uuid4())
    faces.service.finish(task["taskUUID"], video_uuid, seed=9)
    status, _, answer = _post(faces.http_base, [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
    assert status == 200
    (item,) = answer["data"]
    assert item["taskType"] == "videoInference" and item["status"] == "success" and item["seed"] == 9
    assert item["videoUUID"] == video_uuid
    assert item["videoURL"] == f"{faces.http_base}/v1/videos/{video_uuid}"
    assert "cost" not in item


def test_validation_errors_in_the_platform_shape(faces, make_task):
    task = make_task(outputQuality=7)
    status, _, answer = _post(faces.http_base, [task])
    assert status == 400 and "data" not in answer
    (error,) = answer["errors"]
    assert error["code"] == "invalidParameter" and error["parameter"] == "outputQuality"
    assert error["taskUUID"] == task["taskUUID"] and "outputQuality" in error["message"]


def test_mixed_batch_and_unknown_task_type(faces, make_task):
    good = make_task()
    status, _, answer = _post(
        faces.http_base, [good, make_task(duration=99), {"taskType": "imageInference", "taskUUID": "x"}]
    )
    assert status == 200
    assert [d["taskUUID"] for d in answer["data"]] == [good["taskUUID"]]
    assert [e["parameter"] for e in answer["errors"]] == ["duration", "taskType"]


def test_unknown_task_and_full_queue_statuses(faces, make_task):
    status, _, answer = _post(faces.http_base, [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}])
    assert status == 404 and answer["errors"][0]["code"] == "taskNotFound"
    for _ in range(3):
        _post(faces.http_base, [make_task()])
    status, headers, answer = _post(faces.http_base, [make_task()])
    assert status == 429 and headers["Retry-After"] == "2"
    assert answer["errors"][0]["code"] == "queueFull" and answer["errors"][0]["retryable"] is True


def test_not_json_is_refused(faces):
    request = urllib.request.Request(f"{faces.http_base}/v1", data=b"{nope", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["errors"][0]["code"] == "invalidJSON"


def test_api_keys_over_http(keyed_faces, make_task):
    task = make_task()
    status, headers, answer = _post(keyed_faces.http_base, [task])
    assert status == 401 and answer["errors"][0]["code"] == "unauthenticated"
    assert headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = _post(keyed_faces.http_base, [task], headers={"Authorization": "Bearer alice"})
    assert status == 200
    get = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
    status, _, _ = _post(keyed_faces.http_base, get, headers={"Authorization": "Bearer bob"})
    assert status == 404


def test_video_download_with_range_404_and_410(faces, tmp_path):
    artifacts = faces.artifacts
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(range(256)) * 40)
    video_uuid = str(uuid.uuid4())
    artifacts.add(video_uuid, path, "video/mp4")
    url = f"{faces.http_base}/v1/videos/{video_uuid}"

    status, headers, body = _request(url)
    assert status == 200 and headers["Content-Type"] == "video/mp4" and body == path.read_bytes()
    status, headers, body = _request(url, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == path.read_bytes()[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{path.stat().st_size}"

    assert _request(f"{faces.http_base}/v1/videos/{uuid.uuid4()}")[0] == 404
    artifacts.expired.add(video_uuid)
    assert _request(url)[0] == 410


def test_metrics_and_healthz(faces, make_task):
    _post(faces.http_base, [make_task()])
    status, headers, body = _request(f"{faces.http_base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"farm_" in body and b'route="/v1"' in body
    status, _, body = _request(f"{faces.http_base}/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_ttl_expiry_answers_410_and_the_sweeper_deletes_the_file(tmp_path, make_task):
    """The real LocalArtifactStore behind the gateway, with a clock the test moves past the ttl."""
    from farm.gateway.server import Gateway, GatewayConfig
    from farm.io.artifacts import LocalArtifactStore
    from tests.farm.gateway.conftest import FakeService, GatewayThread

    now = [1000.0]
    store = LocalArtifactStore(tmp_path / "videos", clock=lambda: now[0])
    source = tmp_path / "clip.webm"
    source.write_bytes(b"\x1a\x45\xdf\xa3" + b"x" * 1000)
    video_uuid = str(uuid.uuid4())
    artifact = store.put(video_uuid, source, "video/webm", ttl_s=60)
    config = GatewayConfig(grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(tmp_path), expire_interval_s=0.05)
    with GatewayThread(Gateway(config, service=FakeService(), artifacts=store)) as running:
        url = f"{running.http_base}/v1/videos/{video_uuid}"
        status, headers, _ = _request(url)
        assert status == 200 and headers["Content-Type"] == "video/webm"
        now[0] += 61
        assert _request(url)[0] == 410
        deadline = time.time() + 10
        while artifact.path.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert not artifact.path.exists()
        assert _request(url)[0] == 410


# --- bounded work and answers (issue 13 item 1) --------------------------------------------------------


def _post_raw(base, data: bytes, headers=None):
    request = urllib.request.Request(
        f"{base}/v1", data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_a_request_of_100000_items_is_refused_before_any_is_handled(faces):
    status, _, body = _post_raw(faces.http_base, b"[" + b",".join([b"{}"] * 100_000) + b"]")
    assert status == 400 and len(body) < 1024
    (error,) = json.loads(body)["errors"]
    assert error["code"] == "tooManyTasks"
    assert "at most 100 tasks" in error["message"] and "100000" in error["message"]
    assert faces.service.calls == []  # not one item was validated


def test_the_cap_counts_every_item_and_admits_the_limit(faces, make_task):
    status, _, answer = _post(faces.http_base, [make_task(outputQuality=1) for _ in range(100)])
    assert status == 400 and len(answer["errors"]) == 100  # 100 is allowed: each one answered
    status, _, answer = _post(faces.http_base, [{"taskType": "getResponse", "taskUUID": "x"}] * 101)
    assert status == 400 and "got 101" in answer["errors"][0]["message"]


def test_errors_per_item_are_capped_with_a_summary(faces, make_task):
    task = make_task(**{f"unknown{i}": i for i in range(500)})
    status, _, answer = _post(faces.http_base, [task])
    assert status == 400
    errors = answer["errors"]
    assert len(errors) == 21
    assert all(e["taskUUID"] == task["taskUUID"] for e in errors)
    assert "and 480 more" in errors[-1]["message"]


def test_echoed_values_are_clipped(faces, make_task):
    huge = "x" * (10 * 1024 * 1024)
    items = [
        {"taskType": "getResponse", "taskUUID": huge},
        make_task(taskUUID=huge),
        {"taskType": huge, "taskUUID": "abc"},
        {**make_task(), huge: 1},
    ]
    status, _, body = _post_raw(faces.http_base, json.dumps(items).encode())
    assert status == 400 and len(body) < 16 * 1024, len(body)
    errors = json.loads(body)["errors"]
    assert {e["code"] for e in errors} >= {"invalidParameter", "invalidTaskType", "taskNotFound"}
    for error in errors:
        assert len(error["taskUUID"]) <= 131 and len(error["parameter"]) <= 131 and len(error["message"]) <= 1027


# --- the JSON decoder (issue 13 items 3 and 8) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"[" * 1000 + b"]" * 1000, "nested deeper than 32"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32"),
        (b'[{"a": ' * 40 + b"1" + b"}]" * 40, "nested deeper than 32"),
        (b'[{"seed": ' + b"9" * 5000 + b"}]", "5000 digits is too long"),
        (b'[{"duration": NaN}]', "NaN is not JSON"),
        (b'[{"duration": -Infinity}]', "-Infinity is not JSON"),
        (b'[{"taskUUID": "a", "taskUUID": "b"}]', "key 'taskUUID' appears twice"),
        (b'{"inputs": {"mask": "a", "mask": "b"}}', "key 'mask' appears twice"),
        (b"\xff\xfe[]", "not UTF-8"),
        (b"[{}] trailing", "not JSON"),
        (b"", "not JSON"),
    ],
    ids=["deep-1000", "deep-100000", "deep-40", "huge-int", "nan", "infinity", "duplicate", "duplicate-nested",
         "not-utf8", "trailing", "empty"],
)  # fmt: skip
def test_bodies_the_decoder_refuses_are_400_naming_the_problem(faces, body, needle):
    status, _, answer = _post_raw(faces.http_base, body)
    assert status == 400, answer[:300]
    (error,) = json.loads(answer)["errors"]
    assert error["code"] == "invalidJSON" and needle in error["message"], error


def test_an_empty_array_is_refused(faces):
    status, _, answer = _post(faces.http_base, [])
    assert status == 400 and answer["errors"][0]["code"] == "missingParameter"


def test_a_body_over_the_limit_is_413_in_the_platform_shape(tmp_path):
    from tests.farm.gateway.conftest import FakeService
    from tests.farm.gateway.faces import Faces

    with Faces(FakeService(), tmp_path, max_request_bytes=1024) as small:
        status, _, body = _post_raw(small.http_base, b"[" + b" " * 4096 + b"]")
    assert status == 413 and json.loads(body)["errors"][0]["code"] == "payloadTooLarge"


# --- Range (issue 13 item 8) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "status", "part"),
    [
        ("bytes=-0", 416, None),
        ("bytes=10240-", 416, None),
        ("bytes=99999-100000", 416, None),
        ("items=0-1", 200, slice(None)),
        ("bytes=0-1,5-6", 200, slice(None)),
        ("bytes=9-2", 200, slice(None)),
        ("bytes=-", 200, slice(None)),
        ("bytes=-5", 206, slice(-5, None)),
        ("bytes=10000-", 206, slice(10000, None)),
        ("bytes=0-99999", 206, slice(0, None)),
        ("BYTES=3-4", 206, slice(3, 5)),
    ],
)
def test_range_requests_follow_rfc_9110(faces, tmp_path, header, status, part):
    path = tmp_path / "clip.mp4"
    data = bytes(range(256)) * 40  # 10240 bytes
    path.write_bytes(data)
    video_uuid = str(uuid.uuid4())
    faces.artifacts.add(video_uuid, path)
    got, headers, body = _request(f"{faces.http_base}/v1/videos/{video_uuid}", headers={"Range": header})
    assert got == status, (header, got, headers)
    if status == 416:
        assert headers["Content-Range"] == f"bytes */{len(data)}"
    else:
        assert body == data[part]


# --- late failures (issue 13 item 3) ----------------------------------------------------------------------


def test_a_failed_result_never_shows_its_traceback_or_server_paths(faces, make_task):
    import dataclasses

    from farm.domain.records import ResultRecord

    task = make_task()
    _post(faces.http_base, [task])
    leak = (
        'Traceback (most recent call last):\n  File "/srv/farm/farm/io/encode.py", line 3\n'
        "OSError: [Errno 28] No space left on device: '/var/lib/farm-data/out/.x.mp4.partial-1f'"
    )
    failed = ResultRecord(
        task_uuid=task["taskUUID"], index=0, status="error", error_code="encodeFailed", error_message=leak
    )
    service = faces.service
    service.tasks[task["taskUUID"]] = dataclasses.replace(
        service.tasks[task["taskUUID"]], status="error", results=(failed,)
    )
    status, _, answer = _post(faces.http_base, [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
    (error,) = answer["errors"]
    assert error["code"] == "encodeFailed" and error["message"] == "encoding the result failed"
    assert "/var/lib" not in json.dumps(answer) and "Traceback" not in json.dumps(answer)


def test_an_unexpected_exception_is_a_short_500(faces, make_task, monkeypatch, caplog):
    def broken(task_uuid, api_key):
        raise RuntimeError("database at /var/lib/farm-data/tasks.db is malformed")

    monkeypatch.setattr(faces.service, "get", broken)
    status, _, answer = _post(faces.http_base, [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}])
    assert status == 500
    (error,) = answer["errors"]
    assert error == {**error, "code": "internalError", "message": "internal error"}
    assert "malformed" in caplog.text  # the details are in the server log


def test_docstring_examples():
    import doctest

    import farm.gateway.auth
    import farm.gateway.http_app

    for module in (farm.gateway.http_app, farm.gateway.auth):
        assert doctest.testmod(module).failed == 0, module.__name__
