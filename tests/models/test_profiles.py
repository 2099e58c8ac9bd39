"""The model profile registry and the embedded tiny default."""

from __future__ import annotations

import pickle

import pytest

from farm.domain.constants import DEFAULT_MODEL
from models.base import AudioBackend, VideoBackend
from models.profiles import UnknownModelError, get_profile, known_models, register_profile, wan_profile


def test_default_profile_is_known_and_consistent():
    profile = get_profile(DEFAULT_MODEL)
    assert DEFAULT_MODEL in known_models()
    assert profile.model_id == DEFAULT_MODEL
    assert (profile.window_frames, profile.overlap_frames, profile.temporal_stride) == (17, 5, 4)
    assert (profile.window_frames - 1) % profile.temporal_stride == 0
    assert (profile.window_frames - profile.overlap_frames) % profile.temporal_stride == 0
    assert profile.audio_factory is not None


def test_default_native_sizes():
    profile = get_profile(DEFAULT_MODEL)
    assert profile.native_size(1920, 1080) == (112, 64)
    assert profile.native_size(1080, 1920) == (64, 112)
    assert profile.native_size(848, 480) == (112, 64)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(UnknownModelError) as info:
        get_profile("acme:nothing@1")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    message = str(info.value)
    assert "acme:nothing@1" in message and DEFAULT_MODEL in message


def test_default_factories_pickle_and_build():
    profile = pickle.loads(pickle.dumps(get_profile(DEFAULT_MODEL)))
    assert isinstance(profile.video_factory(), VideoBackend)
    assert isinstance(profile.audio_factory(), AudioBackend)


def test_wan_profile_defaults_and_pickles():
    profile = wan_profile("acme:wan@2.1", weights="/weights/wan", dtype="bfloat16", audio_weights=None)
    assert (profile.window_frames, profile.overlap_frames, profile.num_inference_steps) == (81, 17, 30)
    assert profile.native_size(1920, 1080) == (848, 480)
    assert profile.audio_factory is None
    clone = pickle.loads(pickle.dumps(profile))
    assert clone.video_factory.args == ("/weights/wan",)
    assert clone.video_factory.keywords["torch_dtype"] == "bfloat16"  # a name: torch loads in the worker


@pytest.mark.parametrize("window, overlap", [(80, 16), (81, 18), (81, 81)])
def test_wan_profile_rejects_off_grid_windows(window, overlap):
    with pytest.raises(ValueError):
        wan_profile("acme:wan@2.1", window_frames=window, overlap_frames=overlap)


def test_register_profile_refuses_silent_replacement():
    with pytest.raises(ValueError):
        register_profile(get_profile(DEFAULT_MODEL))


def test_default_profile_extends_prompts_and_checks_content():
    import numpy as np

    from models.prompt_extend import PromptExtender
    from models.safety import SafetyChecker

    profile = pickle.loads(pickle.dumps(get_profile(DEFAULT_MODEL)))
    extender = profile.prompt_extender_factory()
    assert isinstance(extender, PromptExtender)
    assert extender.extend("a @fox in snow", seed=4).startswith("a @fox in snow, ")
    checker = profile.safety_factory()
    assert isinstance(checker, SafetyChecker)
    frames = np.random.default_rng(1).integers(0, 256, (3, 64, 112, 3), dtype=np.uint8)
    assert not checker.check(frames).flagged  # random weights: it runs, it never flags


def test_wan_profile_takes_pipeline_dtype_and_the_new_factories():
    from models.prompt_extend import TemplateExtender

    profile = wan_profile(
        "acme:vace@1",
        weights="/w/vace",
        pipeline="WanVACEPipeline",
        dtype="auto",
        audio_dtype="float16",
        prompt_extender_factory=TemplateExtender,
        extra={"source": "test"},
    )
    assert profile.video_factory.keywords["pipeline"] == "WanVACEPipeline"
    assert profile.video_factory.keywords["torch_dtype"] is None
    assert profile.audio_factory.keywords["torch_dtype"] == "float16"
    assert profile.prompt_extender_factory is TemplateExtender and profile.safety_factory is None
    assert profile.extra == {
        "pipeline": "WanVACEPipeline",
        "weights": "/w/vace",
        "dtype": "auto",
        "audio_weights": "stabilityai/stable-audio-open-1.0",
        "source": "test",
    }
    # bf16 video does not carry over to Stable Audio unless asked for.
    assert wan_profile("a", dtype="bfloat16").audio_factory.keywords["torch_dtype"] is None


def test_wan_profile_errors_name_the_argument():
    from models.profiles import InvalidProfileField

    with pytest.raises(InvalidProfileField, match="^window_frames must be 4k\\+1, got 80$") as info:
        wan_profile("a", window_frames=80)
    assert (info.value.field, info.value.reason) == ("window_frames", "must be 4k+1, got 80")
    with pytest.raises(InvalidProfileField, match="^pipeline must be one of"):
        wan_profile("a", pipeline="CogVideoXPipeline")
