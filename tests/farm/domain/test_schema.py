"""Tests of ``farm.domain.schema``: the published JSON Schema is current, describes what
``parse_task`` accepts, and names the seed's fields; one definition of the URL fields."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from farm.domain.constants import URL_FIELDS
from farm.domain.schema import TaskSchema, task_json_schema
from farm.domain.validation import parse_task

ROOT = Path(__file__).resolve().parents[3]
PUBLISHED = ROOT / "docs" / "task.schema.json"
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
REGENERATE = "python -m farm.domain.schema > docs/task.schema.json"


def published_text() -> str:
    return json.dumps(task_json_schema(), indent=2, ensure_ascii=False) + "\n"


def test_the_published_schema_is_current():
    assert PUBLISHED.read_text() == published_text(), f"docs/task.schema.json is stale: run `{REGENERATE}`"


def test_the_module_prints_the_published_schema():
    done = subprocess.run(
        [sys.executable, "-m", "farm.domain.schema"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == published_text()


def test_the_schema_names_the_seed_fields_and_their_limits():
    schema = task_json_schema()
    properties = schema["properties"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"taskType", "taskUUID", "model", "positivePrompt"}
    assert {"taskUUID", "webhookURL", "uploadEndpoint", "outputQuality", "numberResults", "seed"} <= set(properties)
    assert (properties["outputQuality"]["minimum"], properties["outputQuality"]["maximum"]) == (20, 99)
    assert properties["outputQuality"]["default"] == 95
    assert properties["positivePrompt"]["maxLength"] == 5120
    assert properties["outputFormat"]["enum"] == ["MP4", "WEBM", "MOV"]
    inputs = schema["$defs"]["InputsSchema"]["properties"]
    assert {"referenceImages", "frameImages", "referenceVideos", "mask"} == set(inputs)


def test_the_url_fields_are_the_schemas_urls():
    """``URL_FIELDS`` (what the gateway vets with the URL guard) is every URL-typed task field."""
    properties = task_json_schema()["properties"]
    urls = {name for name, spec in properties.items() if any(s.get("format") == "uri" for s in spec.get("anyOf", []))}
    assert urls == set(URL_FIELDS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_every_example_is_valid_by_the_json_schema(path):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(task_json_schema())
    task = json.loads(path.read_text())
    assert [error.message for error in validator.iter_errors(task)] == []
    assert TaskSchema.model_validate(task).model == parse_task(task).model


def test_the_json_schema_refuses_what_parse_task_refuses():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(task_json_schema())
    task = json.loads(EXAMPLES[0].read_text())
    for change in ({"outputQuality": 100}, {"colour": "red"}, {"numberResults": 5}, {"taskType": "imageInference"}):
        assert not validator.is_valid({**task, **change}), change


def test_the_schema_embeds_in_an_openapi_document():
    """The gateway's OpenAPI description: the nested objects become components."""
    schema = task_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.pop("$defs")
    refs = json.dumps(schema) + json.dumps(components)
    assert '"#/$defs/' not in refs
    for name in ("InputsSchema", "SafetySchema", "SettingsSchema", "FrameImageSchema"):
        assert name in components and f'"#/components/schemas/{name}"' in refs
