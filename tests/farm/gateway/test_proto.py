"""The gRPC API's messages carry the seed's JSON exactly, and the generated code is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from farm.domain.validation import parse_task
from farm.gateway import proto_gen
from farm.gateway.wire import task_message_to_dict
from farm.v1 import farm_pb2

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.json"))


def test_generated_code_is_current(tmp_path):
    proto_gen.generate(tmp_path)
    for name in proto_gen.GENERATED:
        committed = (proto_gen.REPO_ROOT / "farm" / "v1" / name).read_text()
        fresh = (tmp_path / "farm" / "v1" / name).read_text()
        assert committed == fresh, f"farm/v1/{name} is stale: run `python -m farm.gateway.proto_gen`"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_round_trips_through_the_message(path):
    raw = json.loads(path.read_text())
    message = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
    back = task_message_to_dict(message)
    assert back == raw
    # The dict goes to the one validator and gives the same task as the original JSON.
    assert parse_task(back) == parse_task(raw)


def test_every_seed_field_has_the_seed_name():
    full = {
        "taskType": "videoInference",
        "taskUUID": "6f6c7c1a-0d01-4942-9312-bfdf0080a3f6",
        "outputType": "URL",
        "outputFormat": "WEBM",
        "outputQuality": 80,
        "webhookURL": "https://example.com/hook",
        "deliveryMethod": "async",
        "uploadEndpoint": "https://example.com/put",
        "safety": {"checkContent": True, "mode": "fast"},
        "ttl": 3600,
        "includeCost": True,
        "inputs": {
            "referenceImages": [
                {
                    "type": "image",
                    "images": ["https://example.com/a.png"],
                    "tag": "@actor",
                    "audio": "https://example.com/v.wav",
                }
            ],
        },
        "numberResults": 2,
        "model": "skywork:skyreels@v4",
        "positivePrompt": "@actor walks",
        "width": 640,
        "height": 360,
        "duration": 4.5,
        "settings": {"audio": False, "promptExtend": False},
        "seed": 12345678901234,
    }
    message = json_format.ParseDict(full, farm_pb2.VideoInferenceTask())
    assert message.task_uuid == full["taskUUID"] and message.webhook_url == full["webhookURL"]
    assert task_message_to_dict(message) == full
    parse_task(task_message_to_dict(message))


def test_frame_images_take_both_seed_forms():
    raw = {
        "inputs": {
            "frameImages": [
                "https://example.com/a.png",
                {"image": "https://example.com/b.png", "frame": 10},
                {"image": "https://example.com/c.png", "frame": "last"},
            ]
        }
    }
    message = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
    items = message.inputs.frame_images
    assert items[0].string_value == "https://example.com/a.png"
    assert items[1].struct_value["frame"] == 10
    back = task_message_to_dict(message)
    assert back == raw
    assert isinstance(back["inputs"]["frameImages"][1]["frame"], int)  # not 10.0: the validator wants integers


def test_absent_differs_from_zero():
    message = json_format.ParseDict({"outputQuality": 0, "includeCost": False}, farm_pb2.VideoInferenceTask())
    assert message.HasField("output_quality") and not message.HasField("ttl")
    assert task_message_to_dict(message) == {"outputQuality": 0, "includeCost": False}


def test_inputs_mask_survives_the_grpc_to_json_conversion(make_task):
    task = make_task(
        inputs={
            "referenceVideos": [{"type": "reference", "tag": "@clip", "video": "https://example.com/clip.mp4"}],
            "mask": "https://example.com/mask.png",
        },
        positivePrompt="Make @clip a lighthouse at night",
        settings={"audio": False},
    )
    message = json_format.ParseDict(task, farm_pb2.VideoInferenceTask())
    assert message.inputs.mask == "https://example.com/mask.png"
    back = task_message_to_dict(message)
    assert back["inputs"]["mask"] == "https://example.com/mask.png"
    assert parse_task(back).inputs.mask == "https://example.com/mask.png"


def test_non_finite_numbers_reach_the_validator_named_by_field(make_task):
    """MessageToDict refuses NaN in a Value (the call failed as UNKNOWN); the conversion keeps it
    for the validator, which names the field."""
    import math

    from farm.domain.errors import TaskValidationError

    raw = make_task(inputs={"frameImages": [{"image": "https://example.com/a.png", "frame": 1}]}, duration=5)
    message = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
    message.inputs.frame_images[0].struct_value["frame"] = float("nan")
    message.duration = float("inf")
    back = task_message_to_dict(message)
    assert math.isnan(back["inputs"]["frameImages"][0]["frame"]) and back["duration"] == float("inf")
    with pytest.raises(TaskValidationError) as caught:
        parse_task(back)
    assert {v.field for v in caught.value.violations} == {"inputs.frameImages[0].frame", "duration"}


def test_struct_and_list_values_convert_like_message_to_dict():
    raw = {
        "inputs": {
            "frameImages": [
                {"image": "https://example.com/a.png", "frame": 3, "extra": [None, True, "x", 1.5, {"deep": [2]}]},
                "https://example.com/b.png",
            ]
        }
    }
    message = json_format.ParseDict(raw, farm_pb2.VideoInferenceTask())
    assert task_message_to_dict(message) == raw
