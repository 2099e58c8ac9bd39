"""TLS on both ports (optional): a self-signed certificate, real TLS clients."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.request
import uuid

import grpc
import pytest
from google.protobuf import json_format

from farm.cli.main import main
from farm.v1 import farm_pb2, farm_pb2_grpc
from tests.farm.gateway.conftest import FakeService, GatewayThread


@pytest.fixture
def tls_gateway(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    from farm.gateway.server import Gateway, GatewayConfig

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    config = GatewayConfig(
        grpc_port=0, http_port=0, host="127.0.0.1", data_dir=str(tmp_path), tls_cert=str(cert), tls_key=str(key)
    )
    with GatewayThread(Gateway(config, service=FakeService())) as running:
        yield running, cert


def test_grpc_and_http_over_tls(tls_gateway, make_task, capsys):
    running, cert = tls_gateway
    credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
    task = make_task()
    with grpc.secure_channel(f"localhost:{running.gateway.grpc_port}", credentials) as channel:
        stub = farm_pb2_grpc.VideoInferenceStub(channel)
        ack = stub.Submit(
            farm_pb2.SubmitRequest(tasks=[json_format.ParseDict(task, farm_pb2.VideoInferenceTask())]), timeout=10
        )
    assert ack.data[0].task_uuid == task["taskUUID"]

    context = ssl.create_default_context(cafile=str(cert))
    request = urllib.request.Request(
        f"https://localhost:{running.gateway.http_port}/v1",
        method="POST",
        data=json.dumps([{"taskType": "getResponse", "taskUUID": task["taskUUID"]}]).encode(),
    )
    with urllib.request.urlopen(request, timeout=10, context=context) as response:
        assert json.loads(response.read())["data"][0]["taskUUID"] == task["taskUUID"]

    # Plain text to the TLS port fails; the CLI connects with --tls-ca.
    with grpc.insecure_channel(f"127.0.0.1:{running.gateway.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError):
            farm_pb2_grpc.VideoInferenceStub(channel).GetResponse(
                farm_pb2.GetResponseRequest(task_uuid=str(uuid.uuid4())), timeout=5
            )
    assert (
        main(["status", task["taskUUID"], "--server", f"localhost:{running.gateway.grpc_port}", "--tls-ca", str(cert)])
        == 0
    )
    assert task["taskUUID"] in capsys.readouterr().out
