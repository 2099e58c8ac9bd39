"""YAML model profiles (``models.profile_config``): errors that name file, profile and field; the
shipped profiles; and tiny random models saved in the shipped profiles' hub layouts loading and
rendering through the real YAML -> factory -> ``from_pretrained`` path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from models.base import AudioRequest
from models.profile_config import ProfileConfigError, load_profiles, parse_profile, register_profiles
from models.profiles import get_profile, known_models
from tests.models.conftest import make_latents, make_request

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "profiles"

GOOD = {
    "model": "test:good@1",
    "video": {"pipeline": "WanPipeline", "weights": "/w/wan"},
    "window_frames": 17,
    "overlap_frames": 5,
    "native": {"area": 112 * 64},
}


def write(tmp_path: Path, text: str, name: str = "profiles.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ProfileConfigError) as caught:
        load_profiles(path)
    return str(caught.value)


# --- parsing and errors ---------------------------------------------------------------------------


def test_a_minimal_profile_gets_documented_defaults():
    profile = parse_profile(GOOD)
    assert (profile.model_id, profile.window_frames, profile.overlap_frames) == ("test:good@1", 17, 5)
    assert profile.native_size(1920, 1080) == (112, 64)
    assert (profile.num_inference_steps, profile.guidance_scale, profile.native_multiple) == (30, 5.0, 16)
    assert profile.audio_factory is None
    assert profile.extra["pipeline"] == "WanPipeline" and profile.extra["dtype"] == "auto"


def test_window_error_names_file_profile_and_field(tmp_path):
    message = error_of(tmp_path, """
        profiles:
          - {model: a, video: {pipeline: WanPipeline, weights: w}, window_frames: 17, overlap_frames: 5, native: {area: 7168}}
          - {model: b, video: {pipeline: WanPipeline, weights: w}, window_frames: 80, overlap_frames: 5, native: {area: 7168}}
    """)
    assert message == f"{tmp_path / 'profiles.yaml'}: profiles[1].window_frames: must be 4k+1, got 80"


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"model": None}, "profiles[0].model", "is required"),
        ({"video": None}, "profiles[0].video", "is required"),
        ({"video": {"pipeline": "CogVideoXPipeline", "weights": "w"}}, "profiles[0].video.pipeline", "must be one of"),
        ({"video": {"pipeline": "WanPipeline"}}, "profiles[0].video.weights", "is required"),
        ({"video": {"pipeline": "WanPipeline", "weights": "w", "dtype": "int8"}}, "profiles[0].video.dtype",
         "must be one of bfloat16, float16, float32, auto"),
        ({"video": {"pipeline": "WanPipeline", "weights": "w", "device": "cuda"}}, "profiles[0].video.device",
         "unknown field"),
        ({"overlap_frames": 6}, "profiles[0].overlap_frames", "multiple of 4"),
        ({"overlap_frames": 17}, "profiles[0].overlap_frames", "below window_frames"),
        ({"window_frames": "81"}, "profiles[0].window_frames", "must be an integer"),
        ({"native": {"area": 7168, "width": 112, "height": 64}}, "profiles[0].native.area", "not both"),
        ({"native": {"width": 100, "height": 64}}, "profiles[0].native.width", "multiple of 16"),
        ({"native": {"fps": 16}}, "profiles[0].native.area", "is required"),
        ({"steps": 0}, "profiles[0].steps", "must be >= 1"),
        ({"guidance_scale": "high"}, "profiles[0].guidance_scale", "must be a number"),
        ({"audio": {"pipeline": "AudioLDMPipeline", "weights": "a"}}, "profiles[0].audio.pipeline", "must be one of"),
        ({"audio": {"pipeline": "StableAudioPipeline"}}, "profiles[0].audio.weights", "is required"),
        ({"safety_checker": "clip"}, "profiles[0].safety_checker", "mapping or null"),
        ({"windows": 3}, "profiles[0].windows", "unknown field"),
    ],
)
def test_each_field_error_names_its_path(tmp_path, change, where, says):
    import yaml

    raw = {**GOOD, **change}
    message = error_of(tmp_path, yaml.safe_dump({"profiles": [raw]}))
    assert message.startswith(f"{tmp_path / 'profiles.yaml'}: {where}: "), message
    assert says in message


def test_file_level_errors(tmp_path):
    assert "expected a mapping with a 'profiles' list" in error_of(tmp_path, "- model: a\n")
    assert "profiles: must be a list" in error_of(tmp_path, "profiles: {a: 1}\n")
    assert "not valid YAML" in error_of(tmp_path, "profiles: [\n")
    assert "profiles[1].model: 'test:good@1' is already defined by profiles[0]" in error_of(
        tmp_path, "profiles:\n  - " + repr(GOOD).replace("'", '"') + "\n  - " + repr(GOOD).replace("'", '"') + "\n")
    with pytest.raises(FileNotFoundError):
        load_profiles(tmp_path / "missing.yaml")


def test_a_directory_loads_every_yaml_and_refuses_duplicates_across_files(tmp_path):
    import yaml

    write(tmp_path, yaml.safe_dump({"profiles": [GOOD]}), "a.yaml")
    write(tmp_path, yaml.safe_dump({"profiles": [{**GOOD, "model": "test:other@1"}]}), "b.yml")
    write(tmp_path, "not a profile", "notes.txt")
    assert [p.model_id for p in load_profiles(tmp_path)] == ["test:good@1", "test:other@1"]
    write(tmp_path, yaml.safe_dump({"profiles": [GOOD]}), "c.yaml")
    with pytest.raises(ProfileConfigError, match=r"c\.yaml: model 'test:good@1' is already defined in .*a\.yaml"):
        load_profiles(tmp_path)


def test_prompt_extender_and_safety_checker_are_kept_in_extra():
    profile = parse_profile({**GOOD, "prompt_extender": {"model": "Qwen/Qwen2.5-0.5B-Instruct"},
                             "safety_checker": {"concepts": ["gore"], "threshold": 0.3}})
    assert profile.extra["prompt_extender"] == {"model": "Qwen/Qwen2.5-0.5B-Instruct"}
    assert profile.extra["safety_checker"]["threshold"] == 0.3


def test_hf_hub_offline_is_passed_to_from_pretrained(monkeypatch):
    from models import profile_config

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert profile_config._hub_kwargs() == {}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert profile_config._hub_kwargs() == {"local_files_only": True}


def test_shipped_profiles_parse_with_real_hub_ids():
    profiles = {p.model_id: p for p in load_profiles(SHIPPED)}
    expected = {
        "wan-ai:wan2.1-vace@1.3b": ("WanVACEPipeline", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", 81, (832, 480)),
        "wan-ai:wan2.1-vace@14b": ("WanVACEPipeline", "Wan-AI/Wan2.1-VACE-14B-diffusers", 81, (1280, 720)),
        "skywork:skyreels-v2-df@1.3b-540p": (
            "SkyReelsV2DiffusionForcingPipeline", "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers", 97, (960, 544)),
    }
    assert set(profiles) == set(expected)
    for model_id, (pipeline, weights, window, native) in expected.items():
        profile = profiles[model_id]
        assert (profile.extra["pipeline"], profile.extra["weights"], profile.window_frames) == (pipeline, weights, window)
        assert (profile.extra["native_width"], profile.extra["native_height"]) == native
        assert profile.extra["audio_weights"] == "stabilityai/stable-audio-open-1.0"


def test_register_profiles_replaces_and_adds(tmp_path):
    import yaml

    path = write(tmp_path, yaml.safe_dump({"profiles": [{**GOOD, "model": "test:registered@1"}]}))
    before = set(known_models())
    try:
        register_profiles(path)
        assert "test:registered@1" in known_models()
        assert get_profile("test:registered@1").extra["source"] == str(path)
    finally:
        from models import profiles as registry

        for model_id in set(known_models()) - before:
            registry._PROFILES.pop(model_id)


# --- tiny weights in the shipped layouts ---------------------------------------------------------


def tiny_vace_pipeline(seed: int = 0):
    """A tiny random ``WanVACEPipeline``: the tiny Wan components with a 2-layer VACE transformer.

    ``vace_in_channels`` 96 = 16 (inactive latents) + 16 (reactive latents) + 64 (the mask folded
    over the VAE's 8x8 spatial stride), as in the real model.
    """
    from diffusers import WanVACEPipeline, WanVACETransformer3DModel

    from models.tiny import TEXT_DIM, tiny_wan_components

    components = tiny_wan_components(seed)
    torch.manual_seed(seed)
    components["transformer"] = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 1], vace_in_channels=96,
    ).eval()
    return WanVACEPipeline(**components)


def tiny_skyreels_df_pipeline(seed: int = 0):
    """A tiny random ``SkyReelsV2DiffusionForcingPipeline`` (UniPC flow scheduler, as the real one)."""
    from diffusers import SkyReelsV2DiffusionForcingPipeline, SkyReelsV2Transformer3DModel, UniPCMultistepScheduler

    from models.tiny import TEXT_DIM, tiny_wan_components

    components = tiny_wan_components(seed)
    del components["transformer_2"]
    torch.manual_seed(seed)
    components["transformer"] = SkyReelsV2Transformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
    ).eval()
    components["scheduler"] = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                      flow_shift=8.0)
    return SkyReelsV2DiffusionForcingPipeline(**components)


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    """A folder laid out like a local hub mirror: ``<owner>/<name>`` per shipped weights id, each
    holding a tiny random model of the right class saved with ``save_pretrained``."""
    from models.tiny import save_tiny_stable_audio

    root = tmp_path_factory.mktemp("hub")
    tiny_vace_pipeline().save_pretrained(root / "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
    # The 14B profile has the same layout and class: one tiny VACE serves both ids.
    (root / "Wan-AI/Wan2.1-VACE-14B-diffusers").symlink_to(root / "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
    tiny_skyreels_df_pipeline().save_pretrained(root / "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers")
    save_tiny_stable_audio(root / "stabilityai/stable-audio-open-1.0")
    return root


def shipped_with_local_weights(hub_dir: Path, tmp_path: Path) -> dict:
    """The shipped profile files with every hub id replaced by its folder under ``hub_dir``."""
    for source in SHIPPED.glob("*.yaml"):
        text = source.read_text()
        for line in text.splitlines():
            if line.strip().startswith("weights:"):
                hub_id = line.split(":", 1)[1].strip()
                text = text.replace(f"weights: {hub_id}", f"weights: {hub_dir / hub_id}")
        (tmp_path / source.name).write_text(text)
    return {p.model_id: p for p in load_profiles(tmp_path)}


@pytest.mark.parametrize(
    ("model_id", "pipeline"),
    [("wan-ai:wan2.1-vace@1.3b", "WanVACEPipeline"),
     ("skywork:skyreels-v2-df@1.3b-540p", "SkyReelsV2DiffusionForcingPipeline")],
)
def test_shipped_profile_loads_tiny_weights_and_renders_a_chunk(hub_dir, tmp_path, monkeypatch, model_id, pipeline):
    # Offline, as on the cluster: the weights come from the folder, never from a hub.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = shipped_with_local_weights(hub_dir, tmp_path)[model_id]
    backend = profile.video_factory()
    assert type(backend.pipeline).__name__ == pipeline
    embeds = backend.encode_prompt("a red fox runs through snow", "blurry")
    frames = backend.render_chunk(make_request(embeds, make_latents(backend, seed=3), num_inference_steps=2))
    assert frames.shape == (17, 64, 112, 3) and frames.dtype == np.uint8
    again = backend.render_chunk(make_request(embeds, make_latents(backend, seed=3), num_inference_steps=2))
    np.testing.assert_array_equal(frames, again)  # the farm's noise, not the pipeline's own


def test_shipped_audio_loads_tiny_weights_and_renders(hub_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = shipped_with_local_weights(hub_dir, tmp_path)["wan-ai:wan2.1-vace@14b"]
    backend = profile.audio_factory()
    audio = backend.render(AudioRequest(prompt="birdsong", duration_s=1.0, seed=1, num_inference_steps=2))
    assert audio.shape == (2, backend.sample_rate) and audio.dtype == np.float32


def test_the_14b_profile_loads_its_own_layout(hub_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = shipped_with_local_weights(hub_dir, tmp_path)["wan-ai:wan2.1-vace@14b"]
    assert type(profile.video_factory().pipeline).__name__ == "WanVACEPipeline"


def test_a_wan_t2v_profile_renders_like_the_embedded_tiny_model(tmp_path, video_backend, embeds):
    """WanPipeline through YAML: the saved tiny Wan renders bit-identically to the in-memory one."""
    import yaml

    from models.tiny import save_tiny_wan

    weights = save_tiny_wan(tmp_path / "wan")
    path = write(tmp_path, yaml.safe_dump({"profiles": [{**GOOD, "video": {"pipeline": "WanPipeline",
                                                                           "weights": str(weights)}}]}))
    [profile] = load_profiles(path)
    backend = profile.video_factory()
    latents = make_latents(backend, seed=5)
    np.testing.assert_array_equal(backend.render_chunk(make_request(embeds, latents)),
                                  video_backend.render_chunk(make_request(embeds, latents)))
