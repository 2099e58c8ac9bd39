"""The JSON/REST face on a real loopback server, over FakeService."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.farm.gateway.conftest import FakeArtifact


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


def test_submit_then_get_response_in_the_platform_shape(fake_gateway, make_task):
    task = make_task()
    status, _, answer = _post(fake_gateway.http_base, [task])
    assert status == 200
    assert answer == {"data": [{"taskType": "videoInference", "taskUUID": task["taskUUID"]}]}

    video_uuid = str(uuid.uuid4())
    fake_gateway.gateway.service.finish(task["taskUUID"], video_uuid, seed=9)
    status, _, answer = _post(fake_gateway.http_base, [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}])
    assert status == 200
    (item,) = answer["data"]
    assert item["taskType"] == "videoInference" and item["status"] == "success" and item["seed"] == 9
    assert item["videoUUID"] == video_uuid
    assert item["videoURL"] == f"{fake_gateway.http_base}/v1/videos/{video_uuid}"
    assert "cost" not in item


def test_validation_errors_in_the_platform_shape(fake_gateway, make_task):
    task = make_task(outputQuality=7)
    status, _, answer = _post(fake_gateway.http_base, [task])
    assert status == 400 and "data" not in answer
    (error,) = answer["errors"]
    assert error["code"] == "invalidParameter" and error["parameter"] == "outputQuality"
    assert error["taskUUID"] == task["taskUUID"] and "outputQuality" in error["message"]


def test_mixed_batch_and_unknown_task_type(fake_gateway, make_task):
    good = make_task()
    status, _, answer = _post(
        fake_gateway.http_base, [good, make_task(duration=99), {"taskType": "imageInference", "taskUUID": "x"}]
    )
    assert status == 200
    assert [d["taskUUID"] for d in answer["data"]] == [good["taskUUID"]]
    assert [e["parameter"] for e in answer["errors"]] == ["duration", "taskType"]


def test_unknown_task_and_full_queue_statuses(fake_gateway, make_task):
    status, _, answer = _post(fake_gateway.http_base, [{"taskType": "getResponse", "taskUUID": str(uuid.uuid4())}])
    assert status == 404 and answer["errors"][0]["code"] == "taskNotFound"
    for _ in range(3):
        _post(fake_gateway.http_base, [make_task()])
    status, headers, answer = _post(fake_gateway.http_base, [make_task()])
    assert status == 429 and headers["Retry-After"] == "2"
    assert answer["errors"][0]["code"] == "queueFull" and answer["errors"][0]["retryable"] is True


def test_not_json_is_refused(fake_gateway):
    request = urllib.request.Request(f"{fake_gateway.http_base}/v1", data=b"{nope", method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert json.loads(caught.value.read())["errors"][0]["code"] == "invalidJSON"


def test_api_keys_over_http(keyed_gateway, make_task):
    task = make_task()
    status, headers, answer = _post(keyed_gateway.http_base, [task])
    assert status == 401 and answer["errors"][0]["code"] == "unauthenticated"
    assert headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = _post(keyed_gateway.http_base, [task], headers={"Authorization": "Bearer alice"})
    assert status == 200
    get = [{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]
    status, _, _ = _post(keyed_gateway.http_base, get, headers={"Authorization": "Bearer bob"})
    assert status == 404


def test_video_download_with_range_404_and_410(fake_gateway, tmp_path):
    artifacts = fake_gateway.gateway.artifacts
    path = tmp_path / "clip.mp4"
    path.write_bytes(bytes(range(256)) * 40)
    video_uuid = str(uuid.uuid4())
    artifacts.items[video_uuid] = FakeArtifact(path, "video/mp4", path.stat().st_size, time.time() + 60)
    url = f"{fake_gateway.http_base}/v1/videos/{video_uuid}"

    status, headers, body = _request(url)
    assert status == 200 and headers["Content-Type"] == "video/mp4" and body == path.read_bytes()
    status, headers, body = _request(url, headers={"Range": "bytes=100-199"})
    assert status == 206 and body == path.read_bytes()[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{path.stat().st_size}"

    assert _request(f"{fake_gateway.http_base}/v1/videos/{uuid.uuid4()}")[0] == 404
    artifacts.expired.add(video_uuid)
    assert _request(url)[0] == 410


def test_metrics_and_healthz(fake_gateway, make_task):
    _post(fake_gateway.http_base, [make_task()])
    status, headers, body = _request(f"{fake_gateway.http_base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert b"farm_" in body and b'route="/v1"' in body
    status, _, body = _request(f"{fake_gateway.http_base}/healthz")
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
