"""Tests of ``farm.domain.validation.parse_task``: defaults, every rule's field path, garbage input."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farm.domain.constants import DEFAULT_MODEL, MAX_PIXELS
from farm.domain.errors import TaskValidationError, Violation
from farm.domain.task import FrameImage, ReferenceImageGroup, ReferenceVideo
from farm.domain.validation import MEDIA_MAX_CHARS, ROOT_FIELD, SEED_MAX, parse_task

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
UUID = "3b241101-e2bb-4255-8caf-4136c566a962"
PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE"
    "hQGAhKmMIQAAAABJRU5ErkJggg=="
)
ASSET_UUID = "f3a1c2d4-0000-4000-8000-000000000000"
DELETE = object()

MINIMAL = {
    "taskType": "videoInference",
    "taskUUID": UUID,
    "model": DEFAULT_MODEL,
    # Mentions every @tag the tests use: a reference's tag must appear in the prompt.
    "positivePrompt": "A lighthouse on a cliff at sunset, waves crashing below. "
    "With @hero, @look, @clip, @actor, @a, @b, @c, @d, @other and @same.",
}


def make(**changes: object) -> dict:
    """The minimal task with top-level fields replaced (``DELETE`` removes one)."""
    task = copy.deepcopy(MINIMAL)
    for key, value in changes.items():
        if value is DELETE:
            task.pop(key, None)
        else:
            task[key] = value
    return task


def violations(raw: object, **kwargs: object) -> list[Violation]:
    """The violations ``parse_task`` reports for ``raw`` (fails when it accepts it)."""
    with pytest.raises(TaskValidationError) as info:
        parse_task(raw, **kwargs)
    assert info.value.violations, "TaskValidationError without violations"
    return info.value.violations


def fields(raw: object, **kwargs: object) -> list[str]:
    """The ``field`` of every violation reported for ``raw``."""
    return [v.field for v in violations(raw, **kwargs)]


def group(**changes: object) -> dict:
    """A valid reference image group with fields replaced (``DELETE`` removes one)."""
    item = {"type": "image", "images": [PNG], "tag": "@actor"}
    for key, value in changes.items():
        if value is DELETE:
            item.pop(key, None)
        else:
            item[key] = value
    return item


def video(**changes: object) -> dict:
    """A valid reference video with fields replaced (``DELETE`` removes one)."""
    item = {"type": "extend", "tag": "@clip", "video": "https://cdn.example.com/in.mp4"}
    for key, value in changes.items():
        if value is DELETE:
            item.pop(key, None)
        else:
            item[key] = value
    return item


# --------------------------------------------------------------------------- valid tasks


def test_minimal_task_gets_every_default():
    task = parse_task(MINIMAL)
    assert task.task_uuid == UUID
    assert task.model == DEFAULT_MODEL
    assert task.positive_prompt == MINIMAL["positivePrompt"]
    assert task.output_type == "URL"
    assert task.output_format == "MP4"
    assert task.output_quality == 95
    assert task.webhook_url is None and task.upload_endpoint is None
    assert task.delivery_method == "async"
    assert task.safety.check_content is False and task.safety.mode == "none"
    assert task.ttl is None
    assert task.include_cost is False
    assert task.inputs.reference_images == ()
    assert task.inputs.frame_images == ()
    assert task.inputs.reference_videos == ()
    assert task.number_results == 1
    assert (task.resolution, task.width, task.height) == ("1080p", 1920, 1080)
    assert task.duration == 5.0 and task.num_frames == 160
    assert task.settings.audio is True and task.settings.prompt_extend is True
    assert task.seed is None


def test_full_task_keeps_every_value():
    raw = make(
        outputType="URL",
        outputFormat="webm",
        outputQuality=80,
        webhookURL="https://hooks.example.com/done?x=1",
        deliveryMethod="async",
        uploadEndpoint="https://bucket.s3.amazonaws.com/out.webm?X-Amz-Signature=abc",
        safety={"checkContent": True, "mode": "Key Frames"},
        ttl=3600,
        includeCost=True,
        numberResults=3,
        resolution="720P",
        duration=7.5,
        settings={"audio": False, "promptExtend": False},
        seed=42,
        inputs={
            "referenceImages": [
                group(type="subject", tag="@hero", audio="https://cdn.example.com/voice.wav"),
                group(type="style", tag="@look", images=[PNG, ASSET_UUID]),
            ],
            "frameImages": [PNG, {"image": PNG, "frame": "last"}, {"image": PNG, "frame": 17}],
        },
    )
    task = parse_task(raw)
    assert task.output_format == "WEBM"
    assert task.output_quality == 80
    assert task.webhook_url == "https://hooks.example.com/done?x=1"
    assert task.upload_endpoint.startswith("https://bucket.s3")
    assert task.safety.check_content is True and task.safety.mode == "fast"
    assert task.ttl == 3600
    assert task.include_cost is True
    assert task.number_results == 3
    assert (task.resolution, task.width, task.height) == ("720p", 1280, 720)
    assert task.duration == 7.5 and task.num_frames == 240
    assert task.settings.audio is False and task.settings.prompt_extend is False
    assert task.seed == 42
    assert task.inputs.reference_images == (
        ReferenceImageGroup(type="image", images=(PNG,), tag="@hero", audio="https://cdn.example.com/voice.wav"),
        ReferenceImageGroup(type="image", images=(PNG, ASSET_UUID), tag="@look"),
    )
    assert task.inputs.frame_images == (
        FrameImage(image=PNG),
        FrameImage(image=PNG, frame="last"),
        FrameImage(image=PNG, frame=17),
    )


def test_reference_video_task():
    raw = make(inputs={"referenceVideos": [video(type="Motion")]})
    task = parse_task(raw)
    assert task.inputs.reference_videos == (
        ReferenceVideo(type="reference", tag="@clip", video="https://cdn.example.com/in.mp4"),
    )
    # The input video's audio is carried to the output: audio generation defaults to off.
    assert task.settings.audio is False


def test_extend_video_keeps_audio_default():
    task = parse_task(make(inputs={"referenceVideos": [video(type="extension")]}))
    assert task.inputs.reference_videos[0].type == "extend"
    assert task.settings.audio is True


def test_reference_video_with_audio_false_is_fine():
    raw = make(inputs={"referenceVideos": [video(type="edit")]}, settings={"audio": False})
    assert parse_task(raw).settings.audio is False


def test_explicit_width_height_clears_resolution():
    task = parse_task(make(width=1280, height=544))
    assert (task.resolution, task.width, task.height) == (None, 1280, 544)


@pytest.mark.parametrize(
    ("resolution", "size"),
    [("480p", (848, 480)), ("720p", (1280, 720)), ("1080p", (1920, 1080)), ("1080P", (1920, 1080))],
)
def test_resolution_presets(resolution, size):
    task = parse_task(make(resolution=resolution))
    assert (task.width, task.height) == size
    assert task.resolution == resolution.lower()


@pytest.mark.parametrize(("duration", "frames"), [(3, 96), (5, 160), (15, 480), (3.5, 112)])
def test_duration_sets_num_frames(duration, frames):
    task = parse_task(make(duration=duration))
    assert task.num_frames == frames
    assert task.duration == float(duration)


@pytest.mark.parametrize("value", ["mp4", "MP4", "Webm", "MOV", "mov"])
def test_output_format_is_case_insensitive(value):
    assert parse_task(make(outputFormat=value)).output_format == value.upper()


@pytest.mark.parametrize(
    ("given", "mode"),
    [
        ("none", "none"),
        ("disabled", "none"),
        ("OFF", "none"),
        ("fast", "fast"),
        ("keyframes", "fast"),
        ("key_frames", "fast"),
        ("Key Frames", "fast"),
        ("full", "full"),
        ("all", "full"),
        ("all_frames", "full"),
        ("ALL FRAMES", "full"),
    ],
)
def test_safety_mode_aliases(given, mode):
    assert parse_task(make(safety={"mode": given})).safety.mode == mode


def test_check_content_with_mode_none_is_kept_as_given():
    safety = parse_task(make(safety={"checkContent": True})).safety
    assert (safety.check_content, safety.mode) == (True, "none")


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ("grid", "grid"),
        ("Collage", "grid"),
        ("image", "image"),
        ("reference", "image"),
        ("subject", "image"),
        ("SCENE", "image"),
        ("style", "image"),
    ],
)
def test_reference_image_type_aliases(given, kind):
    task = parse_task(make(inputs={"referenceImages": [group(type=given)]}))
    assert task.inputs.reference_images[0].type == kind


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ("reference", "reference"),
        ("motion", "reference"),
        ("Edit", "reference"),
        ("replace", "reference"),
        ("extend", "extend"),
        ("EXTENSION", "extend"),
    ],
)
def test_reference_video_type_aliases(given, kind):
    task = parse_task(make(inputs={"referenceVideos": [video(type=given)]}))
    assert task.inputs.reference_videos[0].type == kind


def test_null_optional_fields_mean_absent():
    raw = make(
        outputType=None,
        outputFormat=None,
        outputQuality=None,
        webhookURL=None,
        deliveryMethod=None,
        uploadEndpoint=None,
        safety=None,
        ttl=None,
        includeCost=None,
        inputs=None,
        numberResults=None,
        width=None,
        height=None,
        resolution=None,
        duration=None,
        settings=None,
        seed=None,
    )
    assert parse_task(raw) == parse_task(MINIMAL)
    nested = make(safety={"mode": None, "checkContent": None}, settings={"audio": None})
    assert parse_task(nested) == parse_task(MINIMAL)


def test_upper_case_uuid_is_accepted_as_given():
    assert parse_task(make(taskUUID=UUID.upper())).task_uuid == UUID.upper()


@pytest.mark.parametrize("seed", [0, 1, SEED_MAX])
def test_seed_extension(seed):
    assert parse_task(make(seed=seed)).seed == seed


def test_known_models_registers_other_profiles():
    task = parse_task(make(model="acme:tiny@v1"), known_models=("acme:tiny@v1", DEFAULT_MODEL))
    assert task.model == "acme:tiny@v1"
    [violation] = violations(make(), known_models=["acme:tiny@v1"])
    assert violation.field == "model"
    assert violation.limit == ("acme:tiny@v1",)
    assert "acme:tiny@v1" in violation.message


def test_frame_positions_first_and_last_and_index():
    raw = make(
        duration=3,
        inputs={
            "frameImages": [
                {"image": PNG, "frame": "First"},
                {"image": PNG, "frame": 48},
                {"image": PNG, "frame": 95},
            ]
        },
    )
    frames = [f.frame for f in parse_task(raw).inputs.frame_images]
    assert frames == ["first", 48, 95]


# --------------------------------------------------------------------------- one rule each


def _long(n: int) -> str:
    return "x" * n


TOP_LEVEL_CASES = [
    # unknown fields
    ("unknown-top", make(prompt="x"), "prompt"),
    ("unknown-safety", make(safety={"level": 1}), "safety.level"),
    ("unknown-settings", make(settings={"fps": 24}), "settings.fps"),
    ("unknown-inputs", make(inputs={"audio": "x"}), "inputs.audio"),
    # taskType
    ("taskType-missing", make(taskType=DELETE), "taskType"),
    ("taskType-null", make(taskType=None), "taskType"),
    ("taskType-wrong", make(taskType="imageInference"), "taskType"),
    ("taskType-case", make(taskType="VideoInference"), "taskType"),
    ("taskType-type", make(taskType=1), "taskType"),
    # taskUUID
    ("uuid-missing", make(taskUUID=DELETE), "taskUUID"),
    ("uuid-garbage", make(taskUUID="not-a-uuid"), "taskUUID"),
    ("uuid-v1", make(taskUUID="c232ab00-9414-11ec-b3c8-9f6bdeced846"), "taskUUID"),
    ("uuid-no-hyphens", make(taskUUID=UUID.replace("-", "")), "taskUUID"),
    ("uuid-braces", make(taskUUID="{" + UUID + "}"), "taskUUID"),
    ("uuid-urn", make(taskUUID="urn:uuid:" + UUID), "taskUUID"),
    ("uuid-int", make(taskUUID=12345), "taskUUID"),
    # outputType / outputFormat / outputQuality
    ("outputType", make(outputType="base64Data"), "outputType"),
    ("outputType-type", make(outputType=["URL"]), "outputType"),
    ("outputFormat", make(outputFormat="AVI"), "outputFormat"),
    ("outputFormat-type", make(outputFormat=4), "outputFormat"),
    ("quality-low", make(outputQuality=19), "outputQuality"),
    ("quality-high", make(outputQuality=100), "outputQuality"),
    ("quality-float", make(outputQuality=95.0), "outputQuality"),
    ("quality-bool", make(outputQuality=True), "outputQuality"),
    ("quality-string", make(outputQuality="95"), "outputQuality"),
    # URLs
    ("webhook-ftp", make(webhookURL="ftp://example.com/x"), "webhookURL"),
    ("webhook-relative", make(webhookURL="/hooks/done"), "webhookURL"),
    ("webhook-no-host", make(webhookURL="https://"), "webhookURL"),
    ("webhook-space", make(webhookURL="https://exa mple.com/"), "webhookURL"),
    ("webhook-bad-port", make(webhookURL="https://example.com:99999/"), "webhookURL"),
    ("webhook-type", make(webhookURL={"url": "https://example.com"}), "webhookURL"),
    ("upload-plain", make(uploadEndpoint="example.com/upload"), "uploadEndpoint"),
    ("upload-type", make(uploadEndpoint=7), "uploadEndpoint"),
    # deliveryMethod
    ("delivery-sync", make(deliveryMethod="sync"), "deliveryMethod"),
    # safety
    ("safety-type", make(safety="full"), "safety"),
    ("safety-list", make(safety=[{"mode": "full"}]), "safety"),
    ("checkContent-type", make(safety={"checkContent": "true"}), "safety.checkContent"),
    ("checkContent-int", make(safety={"checkContent": 1}), "safety.checkContent"),
    ("safety-mode", make(safety={"mode": "partial"}), "safety.mode"),
    ("safety-mode-type", make(safety={"mode": 2}), "safety.mode"),
    # ttl / includeCost
    ("ttl-low", make(ttl=59), "ttl"),
    ("ttl-float", make(ttl=600.0), "ttl"),
    ("ttl-bool", make(ttl=True), "ttl"),
    ("includeCost-type", make(includeCost="no"), "includeCost"),
    ("includeCost-int", make(includeCost=0), "includeCost"),
    # numberResults
    ("results-zero", make(numberResults=0), "numberResults"),
    ("results-five", make(numberResults=5), "numberResults"),
    ("results-float", make(numberResults=2.0), "numberResults"),
    ("results-bool", make(numberResults=True), "numberResults"),
    # model
    ("model-missing", make(model=DELETE), "model"),
    ("model-empty", make(model=""), "model"),
    ("model-unknown", make(model="skywork:skyreels@v3"), "model"),
    ("model-type", make(model=["skywork:skyreels@v4"]), "model"),
    # positivePrompt
    ("prompt-missing", make(positivePrompt=DELETE), "positivePrompt"),
    ("prompt-empty", make(positivePrompt=""), "positivePrompt"),
    ("prompt-blank", make(positivePrompt=" \n\t "), "positivePrompt"),
    ("prompt-long", make(positivePrompt=_long(5121)), "positivePrompt"),
    ("prompt-type", make(positivePrompt=42), "positivePrompt"),
    # width / height / resolution
    ("width-alone", make(width=1280), "height"),
    ("height-alone", make(height=720), "width"),
    ("width-small", make(width=126, height=720), "width"),
    ("width-large", make(width=1922, height=720), "width"),
    ("height-small", make(width=1280, height=100), "height"),
    ("width-odd", make(width=1281, height=720), "width"),
    ("height-odd", make(width=1280, height=721), "height"),
    ("width-type", make(width="1280", height=720), "width"),
    ("height-float", make(width=1280, height=720.0), "height"),
    ("pixels", make(width=1920, height=1920), "width"),
    ("size-and-resolution", make(width=1280, height=720, resolution="720p"), "resolution"),
    ("resolution-unknown", make(resolution="4k"), "resolution"),
    ("resolution-type", make(resolution=720), "resolution"),
    # duration
    ("duration-short", make(duration=2.99), "duration"),
    ("duration-long", make(duration=15.01), "duration"),
    ("duration-bool", make(duration=True), "duration"),
    ("duration-string", make(duration="5"), "duration"),
    ("duration-nan", make(duration=math.nan), "duration"),
    ("duration-inf", make(duration=math.inf), "duration"),
    # settings
    ("settings-type", make(settings=[True]), "settings"),
    ("audio-type", make(settings={"audio": "yes"}), "settings.audio"),
    ("promptExtend-type", make(settings={"promptExtend": 1}), "settings.promptExtend"),
    # seed extension
    ("seed-negative", make(seed=-1), "seed"),
    ("seed-huge", make(seed=SEED_MAX + 1), "seed"),
    ("seed-float", make(seed=1.0), "seed"),
    ("seed-bool", make(seed=False), "seed"),
    ("seed-string", make(seed="7"), "seed"),
    # inputs
    ("inputs-type", make(inputs=[]), "inputs"),
    ("inputs-string", make(inputs="frame.png"), "inputs"),
]


def images(*items: object) -> dict:
    return make(inputs={"referenceImages": list(items)})


def frames(*items: object, **changes: object) -> dict:
    return make(inputs={"frameImages": list(items)}, **changes)


def videos(*items: object, **changes: object) -> dict:
    return make(inputs={"referenceVideos": list(items)}, **changes)


def at(frame: object) -> dict:
    return {"image": PNG, "frame": frame}


AUDIO_ON = {"audio": True}
REF = "inputs.referenceImages"
FRAMES = "inputs.frameImages"
VIDEOS = "inputs.referenceVideos"

INPUT_CASES = [
    # referenceImages array
    ("ri-empty", images(), REF),
    ("ri-four", images(group(tag="@a"), group(tag="@b"), group(tag="@c"), group(tag="@d")), REF),
    ("ri-object", make(inputs={"referenceImages": group()}), REF),
    ("ri-item-string", images("@actor"), f"{REF}[0]"),
    ("ri-item-null", images(None), f"{REF}[0]"),
    ("ri-unknown", images(group(weight=0.5)), f"{REF}[0].weight"),
    # type
    ("ri-type-missing", images(group(type=DELETE)), f"{REF}[0].type"),
    ("ri-type-unknown", images(group(type="photo")), f"{REF}[0].type"),
    ("ri-type-type", images(group(type=["image"])), f"{REF}[0].type"),
    ("ri-mixed", images(group(tag="@a"), group(type="grid", tag="@b")), f"{REF}[1].type"),
    (
        "ri-mixed-alias",
        images(group(type="collage", tag="@a"), group(type="style", tag="@b")),
        f"{REF}[1].type",
    ),
    ("ri-grid-two", images(group(type="grid", tag="@a"), group(type="collage", tag="@b")), REF),
    # images
    ("ri-images-missing", images(group(images=DELETE)), f"{REF}[0].images"),
    ("ri-images-empty", images(group(images=[])), f"{REF}[0].images"),
    ("ri-images-six", images(group(images=[PNG] * 6)), f"{REF}[0].images"),
    ("ri-images-string", images(group(images=PNG)), f"{REF}[0].images"),
    ("ri-image-empty", images(group(images=[PNG, ""])), f"{REF}[0].images[1]"),
    ("ri-image-type", images(group(images=[{"url": PNG}])), f"{REF}[0].images[0]"),
    ("ri-image-null", images(group(images=[None])), f"{REF}[0].images[0]"),
    # tag
    ("ri-tag-missing", images(group(tag=DELETE)), f"{REF}[0].tag"),
    ("ri-tag-no-at", images(group(tag="actor")), f"{REF}[0].tag"),
    ("ri-tag-only-at", images(group(tag="@")), f"{REF}[0].tag"),
    ("ri-tag-space", images(group(tag="@my actor")), f"{REF}[0].tag"),
    ("ri-tag-type", images(group(tag=1)), f"{REF}[0].tag"),
    ("ri-tag-dup", images(group(tag="@a"), group(tag="@a")), f"{REF}[1].tag"),
    # audio
    ("ri-audio-empty", images(group(audio="")), f"{REF}[0].audio"),
    ("ri-audio-type", images(group(audio=3)), f"{REF}[0].audio"),
    ("ri-audio-ftp", images(group(audio="ftp://example.com/voice.wav")), f"{REF}[0].audio"),
    # frameImages array
    ("fi-empty", frames(), FRAMES),
    ("fi-nine", frames(*[PNG] * 9), FRAMES),
    ("fi-string", make(inputs={"frameImages": PNG}), FRAMES),
    ("fi-item-int", frames(PNG, 5), f"{FRAMES}[1]"),
    ("fi-item-list", frames([PNG]), f"{FRAMES}[0]"),
    ("fi-item-empty", frames(""), f"{FRAMES}[0]"),
    ("fi-unknown", frames({"image": PNG, "frame": 0, "weight": 1}), f"{FRAMES}[0].weight"),
    ("fi-image-missing", frames({"frame": "first"}), f"{FRAMES}[0].image"),
    ("fi-image-empty", frames({"image": "", "frame": "first"}), f"{FRAMES}[0].image"),
    ("fi-frame-missing", frames({"image": PNG}), f"{FRAMES}[0].frame"),
    ("fi-frame-word", frames({"image": PNG, "frame": "middle"}), f"{FRAMES}[0].frame"),
    ("fi-frame-negative", frames({"image": PNG, "frame": -1}), f"{FRAMES}[0].frame"),
    ("fi-frame-float", frames({"image": PNG, "frame": 1.0}), f"{FRAMES}[0].frame"),
    ("fi-frame-bool", frames({"image": PNG, "frame": True}), f"{FRAMES}[0].frame"),
    ("fi-frame-past-end", frames({"image": PNG, "frame": 160}), f"{FRAMES}[0].frame"),
    ("fi-frame-past-3s", frames({"image": PNG, "frame": 96}, duration=3), f"{FRAMES}[0].frame"),
    ("fi-same-first", frames(at("first"), at(0)), f"{FRAMES}[1].frame"),
    ("fi-same-last", frames(at(159), at("last")), f"{FRAMES}[1].frame"),
    ("fi-same-index", frames(at(7), at(7)), f"{FRAMES}[1].frame"),
    ("fi-same-first-first", frames(at("first"), at("FIRST")), f"{FRAMES}[1].frame"),
    ("fi-same-last-3s", frames(at("last"), at(95), duration=3), f"{FRAMES}[1].frame"),
    # referenceVideos
    ("rv-empty", videos(), VIDEOS),
    ("rv-two", videos(video(), video(tag="@other")), VIDEOS),
    ("rv-object", make(inputs={"referenceVideos": video()}), VIDEOS),
    ("rv-item-string", videos("https://cdn.example.com/in.mp4"), f"{VIDEOS}[0]"),
    ("rv-unknown", videos(video(start=0)), f"{VIDEOS}[0].start"),
    ("rv-type-missing", videos(video(type=DELETE)), f"{VIDEOS}[0].type"),
    ("rv-type-unknown", videos(video(type="style")), f"{VIDEOS}[0].type"),
    ("rv-tag-missing", videos(video(tag=DELETE)), f"{VIDEOS}[0].tag"),
    ("rv-tag-no-at", videos(video(tag="video1")), f"{VIDEOS}[0].tag"),
    ("rv-video-missing", videos(video(video=DELETE)), f"{VIDEOS}[0].video"),
    ("rv-video-empty", videos(video(video="")), f"{VIDEOS}[0].video"),
    ("rv-video-type", videos(video(video=["a.mp4"])), f"{VIDEOS}[0].video"),
    # media string shapes
    ("media-data-no-base64", frames("data:image/png,abc"), f"{FRAMES}[0]"),
    ("media-data-empty", frames("data:image/png;base64,"), f"{FRAMES}[0]"),
    ("media-data-no-type", frames("data:;base64,AAAA"), f"{FRAMES}[0]"),
    ("media-ftp", frames("ftp://example.com/a.png"), f"{FRAMES}[0]"),
    ("media-no-host", frames("https:///a.png"), f"{FRAMES}[0]"),
    ("media-space-url", frames("https://example.com/a b.png"), f"{FRAMES}[0]"),
    # cross-field
    (
        "videos-with-images",
        make(inputs={"referenceImages": [group()], "referenceVideos": [video()]}),
        VIDEOS,
    ),
    ("reference-video-audio", videos(video(type="reference"), settings=AUDIO_ON), "settings.audio"),
    ("motion-video-audio", videos(video(type="motion"), settings=AUDIO_ON), "settings.audio"),
]


@pytest.mark.parametrize(
    ("raw", "field"),
    [pytest.param(raw, field, id=name) for name, raw, field in TOP_LEVEL_CASES + INPUT_CASES],
)
def test_each_rule_names_its_field(raw, field):
    found = violations(raw)
    assert [v.field for v in found] == [field], [str(v) for v in found]
    violation = found[0]
    assert violation.message
    assert field in str(TaskValidationError(found))


@pytest.mark.parametrize("raw", [None, [], [MINIMAL], "videoInference", 3, 2.5, True])
def test_task_must_be_an_object(raw):
    [violation] = violations(raw)
    assert violation.field == ROOT_FIELD
    assert "object" in violation.message


def test_tag_shared_by_group_and_video_is_reported():
    raw = make(inputs={"referenceImages": [group(tag="@same")], "referenceVideos": [video(tag="@same")]})
    assert set(fields(raw)) == {VIDEOS, f"{VIDEOS}[0].tag"}


def test_media_string_over_50_mb():
    huge = "A" * (MEDIA_MAX_CHARS + 1)
    [violation] = violations(frames(huge))
    assert violation.field == f"{FRAMES}[0]"
    assert violation.limit == MEDIA_MAX_CHARS
    assert len(str(violation.value)) < 200  # the error does not carry the 50 MB back
    assert parse_task(frames("A" * 1000)).inputs.frame_images[0].image == "A" * 1000


def test_media_shapes_that_pass():
    ok = [
        PNG,
        "DATA:image/jpeg;charset=utf-8;base64,/9j/4AAQ",
        "https://cdn.example.com/a.png?sig=1",
        "http://10.0.0.1:8080/a.png",
        "f3a1c2d4-0000-4000-8000-000000000000",
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB",
    ]
    task = parse_task(frames(*ok))
    assert [f.image for f in task.inputs.frame_images] == ok


# --------------------------------------------------------------------------- what is reported


def test_violation_carries_limit_and_value():
    [quality] = violations(make(outputQuality=100))
    assert (quality.limit, quality.value) == ((20, 99), 100)
    assert "between 20 and 99" in quality.message

    [kind] = violations(make(outputQuality=95.0))
    assert "integer" in kind.message and "number" in kind.message
    assert kind.value == 95.0

    [frame] = violations(frames({"image": PNG, "frame": 200}))
    assert (frame.limit, frame.value) == (159, 200)

    [fmt] = violations(make(outputFormat="gif"))
    assert fmt.limit == ("MP4", "WEBM", "MOV") and fmt.value == "gif"

    [mode] = violations(make(safety={"mode": "some"}))
    assert mode.limit == ("none", "fast", "full")
    assert "keyframes" in mode.message  # the aliases are named

    [ttl] = violations(make(ttl=10))
    assert (ttl.limit, ttl.value) == (60, 10)

    [pixels] = violations(make(width=1920, height=1920))
    assert pixels.limit == MAX_PIXELS

    [unknown] = violations(make(colour="red"))
    assert unknown.message == "unknown field" and unknown.value == "red"
    assert "positivePrompt" in unknown.limit


def test_every_violation_is_reported_at_once():
    raw = make(
        taskUUID="nope",
        outputFormat="gif",
        outputQuality=5,
        numberResults=9,
        duration=30,
        colour="red",
        safety={"mode": "paranoid"},
        settings={"audio": "loud"},
        inputs={"frameImages": ["", {"image": PNG, "frame": "end"}]},
    )
    assert set(fields(raw)) == {
        "taskUUID",
        "outputFormat",
        "outputQuality",
        "numberResults",
        "duration",
        "colour",
        "safety.mode",
        "settings.audio",
        f"{FRAMES}[0]",
        f"{FRAMES}[1].frame",
    }


def test_frame_index_is_not_bounded_when_duration_is_invalid():
    raw = frames({"image": PNG, "frame": 400}, duration=99)
    assert fields(raw) == ["duration"]


def test_error_carries_task_uuid_when_it_is_a_string():
    with pytest.raises(TaskValidationError) as info:
        parse_task(make(outputQuality=1))
    assert info.value.task_uuid == UUID
    with pytest.raises(TaskValidationError) as info:
        parse_task(make(taskUUID="not-a-uuid", outputQuality=1))
    assert info.value.task_uuid == "not-a-uuid"
    with pytest.raises(TaskValidationError) as info:
        parse_task(make(taskUUID=7))
    assert info.value.task_uuid is None


def test_long_values_are_shortened_in_violations():
    [violation] = violations(make(positivePrompt="y" * 6000))
    assert isinstance(violation.value, str) and len(violation.value) < 200
    assert "6000" in violation.value


# --------------------------------------------------------------------------- garbage in


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
KEYS = sorted(
    {
        *MINIMAL,
        "outputType",
        "outputFormat",
        "outputQuality",
        "webhookURL",
        "deliveryMethod",
        "uploadEndpoint",
        "safety",
        "ttl",
        "includeCost",
        "inputs",
        "numberResults",
        "width",
        "height",
        "resolution",
        "duration",
        "settings",
        "seed",
    }
)
INNER_KEYS = [
    "checkContent",
    "mode",
    "audio",
    "promptExtend",
    "referenceImages",
    "frameImages",
    "referenceVideos",
    "type",
    "images",
    "tag",
    "image",
    "frame",
    "video",
]
# Values shaped like the API (known keys at every level) so garbage reaches the inner checks.
SHAPED = st.recursive(
    JSON,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(INNER_KEYS), children, max_size=5)
    ),
    max_leaves=20,
)


def _never_crashes(raw: object) -> None:
    try:
        parse_task(raw)
    except TaskValidationError as error:
        assert error.violations
        # Violations go out as strict JSON (no NaN) and UTF-8 (no lone surrogate), on both faces.
        str(error).encode("utf-8")
        for v in error.violations:
            json.dumps({"field": v.field, "message": str(v), "value": v.value}, allow_nan=False).encode("utf-8")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), JSON, max_size=4))
def test_garbage_never_raises_anything_else(raw):
    _never_crashes(raw)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), SHAPED, max_size=8))
def test_garbage_fields_never_raise_anything_else(changes):
    _never_crashes({**MINIMAL, **changes})


# --------------------------------------------------------------------------- examples/


EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def test_examples_exist():
    names = {path.name for path in EXAMPLE_FILES}
    assert {
        "text-to-video-480p.json",
        "text-to-video-720p.json",
        "two-results-webm.json",
        "editing-mov.json",
    } <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_every_example_parses(path):
    task = parse_task(json.loads(path.read_text()))
    assert task.model == DEFAULT_MODEL


@pytest.mark.parametrize(
    ("name", "fmt", "size", "frames_", "results", "quality"),
    [
        ("text-to-video-480p.json", "MP4", (848, 480), 96, 1, 95),
        ("text-to-video-720p.json", "MP4", (1280, 720), 160, 1, 95),
        ("two-results-webm.json", "WEBM", (848, 480), 96, 2, 95),
        ("editing-mov.json", "MOV", (848, 480), 96, 1, 90),
    ],
)
def test_example_contents(name, fmt, size, frames_, results, quality):
    task = parse_task(json.loads((EXAMPLES / name).read_text()))
    assert task.output_format == fmt
    assert (task.width, task.height) == size
    assert task.num_frames == frames_
    assert task.number_results == results
    assert task.output_quality == quality
    assert task.settings.audio is True


@pytest.mark.parametrize(
    "changes",
    [
        {"duration": 10**400},
        {"width": 10**5000, "height": 720},
        {"seed": -(10**5000)},
        {"inputs": {"frameImages": [{"image": PNG, "frame": 10**5000}]}},
    ],
)
def test_huge_integers_are_reported_not_crashed_on(changes):
    found = violations(make(**changes))
    assert all(len(str(v)) < 2000 for v in found)


def test_a_reference_tag_must_be_mentioned_in_the_prompt():
    raw = make(
        positivePrompt="@dancer on a stage",
        inputs={"referenceImages": [{"type": "image", "images": [PNG], "tag": "@dancer"}]},
    )
    assert parse_task(raw).inputs.reference_images[0].tag == "@dancer"
    # "@dancers" is another word, not a mention of @dancer; an unmentioned tag names the field.
    raw["positivePrompt"] = "Two @dancers on a stage"
    [violation] = violations(raw)
    assert violation.field == "inputs.referenceImages[0].tag"
    assert "@dancer" in violation.message and "positivePrompt" in violation.message


def test_mask_needs_a_reference_type_video():
    video = {"type": "reference", "tag": "@clip", "video": ASSET_UUID}
    task = parse_task(make(inputs={"referenceVideos": [video], "mask": PNG}))
    assert task.inputs.mask == PNG
    assert fields(make(inputs={"mask": PNG})) == ["inputs.mask"]
    assert fields(make(inputs={"referenceVideos": [dict(video, type="extend")], "mask": PNG})) == ["inputs.mask"]
    assert fields(make(inputs={"referenceVideos": [video], "mask": 7})) == ["inputs.mask"]


# --------------------------------------------------------------------------- rules between sections


def test_a_field_error_does_not_hide_the_rules_between_valid_sections():
    """A bad field and a cross-field rule elsewhere are reported together, as every other pair is."""
    raw = make(outputQuality=5, width=1280, seed=SEED_MAX, numberResults=3)
    assert set(fields(raw)) == {"outputQuality", "height", "seed"}
    raw = frames({"image": PNG, "frame": 200}, taskUUID="nope", positivePrompt=" ")
    assert set(fields(raw)) == {"taskUUID", "positivePrompt", f"{FRAMES}[0].frame"}


# --------------------------------------------------------------------------- bad input that failed late (issue 13)


@pytest.mark.parametrize("results", [2, 3, 4])
def test_the_last_results_seed_must_fit_a_signed_64_bit_integer(results):
    """Result i renders with seed + i: SEED_MAX with numberResults 2 overflowed int64 after validation."""
    [violation] = violations(make(seed=SEED_MAX, numberResults=results))
    assert violation.field == "seed"
    assert violation.limit == (0, SEED_MAX - (results - 1)) and violation.value == SEED_MAX
    assert str(SEED_MAX - (results - 1)) in violation.message and "numberResults" in violation.message
    highest = parse_task(make(seed=SEED_MAX - (results - 1), numberResults=results))
    assert highest.seed + highest.number_results - 1 == SEED_MAX
    assert parse_task(make(seed=SEED_MAX)).seed == SEED_MAX  # one result: seed itself


LONE = "\ud800"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        pytest.param(make(positivePrompt=f"A lighthouse {LONE} at night"), "positivePrompt", id="prompt"),
        pytest.param(make(webhookURL=f"https://hooks.example.com/{LONE}"), "webhookURL", id="webhook"),
        pytest.param(make(uploadEndpoint=f"https://up.example.com/{LONE}"), "uploadEndpoint", id="upload"),
        pytest.param(frames(f"iVBORw0KGgo{LONE}"), f"{FRAMES}[0]", id="frame-image"),
        pytest.param(frames({"image": PNG, "frame": f"first{LONE}"}), f"{FRAMES}[0].frame", id="frame"),
        pytest.param(images(group(images=[PNG, f"{ASSET_UUID}{LONE}"])), f"{REF}[0].images[1]", id="ref-image"),
        pytest.param(images(group(audio=f"voice{LONE}")), f"{REF}[0].audio", id="ref-audio"),
        pytest.param(images(group(tag=f"@actor{LONE}")), f"{REF}[0].tag", id="ref-tag"),
        pytest.param(videos(video(video=f"https://cdn.example.com/{LONE}.mp4")), f"{VIDEOS}[0].video", id="video"),
        pytest.param(make(model=f"skywork:skyreels@v4{LONE}"), "model", id="model"),
        pytest.param(make(outputFormat=f"MP4{LONE}"), "outputFormat", id="enum"),
        pytest.param(make(taskUUID=UUID[:-1] + LONE), "taskUUID", id="uuid"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_the_field(raw, field):
    """Valid in a Python str, not in UTF-8: it passed validation, then failed at render with a traceback."""
    [violation] = violations(raw)
    assert violation.field == field
    str(violation).encode("utf-8")  # the error itself is sendable
    assert LONE not in str(violation.value) and "\\ud800" in str(violation.value)


def test_a_key_with_a_lone_surrogate_is_an_unknown_field():
    [violation] = violations(make(**{f"colour{LONE}": "red"}))
    assert violation.message == "unknown field" and violation.field == "colour\\ud800"
    str(violation).encode("utf-8")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_non_finite_frame_is_a_clean_violation(value):
    """gRPC carries frame numbers as doubles (google.protobuf.Value): NaN and Infinity can arrive."""
    [violation] = violations(frames({"image": PNG, "frame": value}))
    assert violation.field == f"{FRAMES}[0].frame"
    assert violation.value in ("NaN", "Infinity", "-Infinity") and violation.value in violation.message
    json.dumps({"value": violation.value}, allow_nan=False)  # strict JSON, as both faces send it


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_a_non_finite_number_anywhere_is_reported_as_text(value):
    found = violations(make(duration=value, outputQuality=value, seed=value))
    assert {v.field for v in found} == {"duration", "outputQuality", "seed"}
    json.dumps([v.value for v in found], allow_nan=False)
