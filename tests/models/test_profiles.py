"""The model profile registry and the embedded tiny default."""

from __future__ import annotations

import pickle

import pytest
import torch

from farm.constants import DEFAULT_MODEL
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
    assert clone.video_factory.keywords["torch_dtype"] is torch.bfloat16


@pytest.mark.parametrize("window, overlap", [(80, 16), (81, 18), (81, 81)])
def test_wan_profile_rejects_off_grid_windows(window, overlap):
    with pytest.raises(ValueError):
        wan_profile("acme:wan@2.1", window_frames=window, overlap_frames=overlap)


def test_register_profile_refuses_silent_replacement():
    with pytest.raises(ValueError):
        register_profile(get_profile(DEFAULT_MODEL))
