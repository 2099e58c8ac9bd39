"""``GET /openapi.json``: a valid OpenAPI 3.1 document whose task schema is the validator's own."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import jsonschema
from openapi_spec_validator import validate

from farm.domain.schema import task_json_schema
from tests.farm.gateway.faces import faces_fixture, keyed_faces_fixture  # noqa: F401 - fixtures faces, keyed_faces

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def fetch(faces) -> dict:
    with urllib.request.urlopen(f"{faces.http_base}/openapi.json", timeout=30) as answer:
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/json")
        return json.load(answer)


def test_the_served_document_is_valid_openapi_and_needs_no_key(keyed_faces):
    document = fetch(keyed_faces)  # keys are on: the description is public
    validate(document)
    assert {"/v1", "/v1/videos/{videoUUID}", "/healthz", "/metrics"} <= set(document["paths"])


def test_the_task_schema_in_it_is_the_validators_and_accepts_every_example(faces):
    document = fetch(faces)
    schemas = document["components"]["schemas"]
    task = schemas["VideoInferenceTask"]
    assert set(task["properties"]) == set(task_json_schema()["properties"])
    resolver_root = {"components": {"schemas": schemas}, **task}
    for example in sorted(EXAMPLES.glob("*.json")):
        raw = json.loads(example.read_text())
        for item in raw if isinstance(raw, list) else [raw]:
            jsonschema.validate(item, resolver_root)
    bad = json.loads((EXAMPLES / "text-to-video-480p.json").read_text()) | {"outputQuality": 5}
    try:
        jsonschema.validate(bad, resolver_root)
    except jsonschema.ValidationError as error:
        assert "outputQuality" in str(error.path) or error.validator == "minimum"
    else:
        raise AssertionError("outputQuality 5 passed the published schema")
