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
    message = error_of(
        tmp_path,
        """
        profiles:
          - {model: a, video: {pipeline: WanPipeline, weights: w}, window_frames: 17, overlap_frames: 5, native: {area: 7168}}
          - {model: b, video: {pipeline: WanPipeline, weights: w}, window_frames: 80, overlap_frames: 5, native: {area: 7168}}
    """,
    )
    assert message == f"{tmp_path / 'profiles.yaml'}: profiles[1].window_frames: must be 4k+1, got 80"


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"model": None}, "profiles[0].model", "is required"),
        ({"video": None}, "profiles[0].video", "is required"),
        ({"video": {"pipeline": "CogVideoXPipeline", "weights": "w"}}, "profiles[0].video.pipeline", "must be one of"),
        ({"video": {"pipeline": "WanPipeline"}}, "profiles[0].video.weights", "is required"),
        (
            {"video": {"pipeline": "WanPipeline", "weights": "w", "dtype": "int8"}},
            "profiles[0].video.dtype",
            "must be one of bfloat16, float16, float32, auto",
        ),
        (
            {"video": {"pipeline": "WanPipeline", "weights": "w", "device": "cuda"}},
            "profiles[0].video.device",
            "unknown field",
        ),
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
        (
            {"safety_checker": {"concepts": ["gore"], "threshold": 0.3}},
            "profiles[0].safety_checker.model",
            "is required",
        ),
        ({"safety_checker": {"model": "m", "threshold": 0.3}}, "profiles[0].safety_checker.concepts", "is required"),
        (
            {"safety_checker": {"model": "m", "concepts": [], "threshold": 0.3}},
            "profiles[0].safety_checker.concepts",
            "non-empty list",
        ),
        (
            {"safety_checker": {"model": "m", "concepts": ["gore", ""], "threshold": 0.3}},
            "profiles[0].safety_checker.concepts[1]",
            "non-empty string",
        ),
        (
            {"safety_checker": {"model": "m", "concepts": ["gore"]}},
            "profiles[0].safety_checker.threshold",
            "is required",
        ),
        (
            {"safety_checker": {"model": "m", "concepts": ["gore"], "threshold": -1}},
            "profiles[0].safety_checker.threshold",
            "must be >= 0",
        ),
        (
            {"safety_checker": {"model": "m", "concepts": ["gore"], "threshold": 0.3, "cutoff": 1}},
            "profiles[0].safety_checker.cutoff",
            "unknown field",
        ),
        (
            {"prompt_extender": "llm"},
            "profiles[0].prompt_extender",
            "must be 'template', a mapping with a model, or null",
        ),
        ({"prompt_extender": {"max_new_tokens": 64}}, "profiles[0].prompt_extender.model", "is required"),
        (
            {"prompt_extender": {"model": "m", "max_new_tokens": 0}},
            "profiles[0].prompt_extender.max_new_tokens",
            "must be >= 1",
        ),
        (
            {"prompt_extender": {"model": "m", "temperature": "hot"}},
            "profiles[0].prompt_extender.temperature",
            "must be a number",
        ),
        (
            {"prompt_extender": {"model": "m", "system_prompt": ""}},
            "profiles[0].prompt_extender.system_prompt",
            "non-empty string",
        ),
        ({"windows": 3}, "profiles[0].windows", "unknown field"),
        ({"speed": "fast"}, "profiles[0].speed", "must be a mapping or null"),
        ({"speed": {"cache": 0.1}}, "profiles[0].speed.cache", "unknown field; known: compile, first_block_cache"),
        ({"speed": {"half_precision": "int8"}}, "profiles[0].speed.half_precision", "must be one of bfloat16, float16"),
        ({"speed": {"compile": True}}, "profiles[0].speed.compile", "must be one of default, reduce-overhead"),
        ({"speed": {"first_block_cache": 0}}, "profiles[0].speed.first_block_cache", "must be > 0, got 0"),
        ({"speed": {"first_block_cache": "0.1"}}, "profiles[0].speed.first_block_cache", "must be a number"),
        ({"speed": {"vae_tiling": "yes"}}, "profiles[0].speed.vae_tiling", "must be true, false or a mapping"),
        ({"speed": {"vae_tiling": {"tile": 60}}}, "profiles[0].speed.vae_tiling.tile", "must be a multiple of 8"),
        (
            {"speed": {"vae_tiling": {"tile": 64, "stride": 64}}},
            "profiles[0].speed.vae_tiling.stride",
            "must be below tile (64) so that tiles overlap, got 64",
        ),
        (
            {
                "video": {"pipeline": "WanPipeline", "weights": "w", "dtype": "float32"},
                "speed": {"half_precision": "float16"},
            },
            "profiles[0].speed.half_precision",
            "leave video.dtype auto, got float32",
        ),
        (
            {
                "video": {"pipeline": "SkyReelsV2DiffusionForcingPipeline", "weights": "w"},
                "speed": {"first_block_cache": 0.05},
            },
            "profiles[0].speed.first_block_cache",
            "needs WanPipeline or WanVACEPipeline",
        ),
        (
            {"chunk_mode": "codenoise", "speed": {"first_block_cache": 0.05}},
            "profiles[0].speed.first_block_cache",
            "cannot be used with chunk_mode codenoise",
        ),
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
        tmp_path, "profiles:\n  - " + repr(GOOD).replace("'", '"') + "\n  - " + repr(GOOD).replace("'", '"') + "\n"
    )
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


def test_speed_options_reach_the_video_factory_as_plain_values():
    profile = parse_profile(
        {
            **GOOD,
            "speed": {
                "half_precision": "bfloat16",
                "compile": "max-autotune",
                "first_block_cache": 0.1,
                "vae_tiling": True,
            },
        }
    )
    keywords = profile.video_factory.keywords
    assert (keywords["half_precision"], keywords["compile_mode"]) == ("bfloat16", "max-autotune")
    assert (keywords["first_block_cache"], keywords["vae_tiling"]) == (0.1, (256, 192))  # true: the defaults
    assert profile.extra["speed"] == {
        "half_precision": "bfloat16",
        "compile": "max-autotune",
        "first_block_cache": 0.1,
        "vae_tiling": {"tile": 256, "stride": 192},
    }
    tiles = parse_profile({**GOOD, "speed": {"vae_tiling": {"stride": 128}}})
    assert tiles.video_factory.keywords["vae_tiling"] == (256, 128)


@pytest.mark.parametrize("speed", [None, {}, {"vae_tiling": False, "compile": None}])
def test_speed_options_are_off_unless_given(speed):
    profile = parse_profile({**GOOD, "speed": speed})
    assert "speed" not in profile.extra
    assert not {"half_precision", "compile_mode", "first_block_cache", "vae_tiling"} & set(
        profile.video_factory.keywords
    )


def test_prompt_extender_and_safety_checker_are_optional():
    profile = parse_profile(GOOD)
    assert profile.prompt_extender_factory is None and profile.safety_factory is None
    assert profile.extra["prompt_extender"] is None and profile.extra["safety_checker"] is None


def test_the_template_extender_needs_no_model():
    from models.prompt_extend import TemplateExtender

    profile = parse_profile({**GOOD, "prompt_extender": "template"})
    extender = profile.prompt_extender_factory()
    assert isinstance(extender, TemplateExtender)
    assert extender.extend("a @fox", seed=1).startswith("a @fox, ")
    assert profile.extra["prompt_extender"] == {"kind": "template"}


def test_model_extender_and_checker_are_configured_but_not_loaded(tmp_path):
    """Parsing never loads a model: a missing folder parses, and fails only when the factory runs."""
    import pickle

    missing = str(tmp_path / "not-there")
    profile = parse_profile(
        {
            **GOOD,
            "prompt_extender": {"model": missing, "max_new_tokens": 64, "system_prompt": "Expand."},
            "safety_checker": {
                "model": missing,
                "concepts": ["gore"],
                "threshold": 0.3,
                "safe_prompts": ["a photo of a field"],
            },
        }
    )
    assert profile.extra["prompt_extender"] == {
        "kind": "transformers",
        "model": missing,
        "max_new_tokens": 64,
        "temperature": 0.0,
        "system_prompt": "Expand.",
    }
    assert profile.extra["safety_checker"] == {
        "kind": "clip",
        "model": missing,
        "concepts": ["gore"],
        "threshold": 0.3,
        "safe_prompts": ["a photo of a field"],
    }
    clone = pickle.loads(pickle.dumps(profile))  # Ray ships the factories to the workers
    assert clone.safety_factory.keywords["concepts"] == ("gore",)
    with pytest.raises(OSError):
        clone.prompt_extender_factory()
    with pytest.raises(OSError):
        clone.safety_factory()


def test_hf_hub_offline_is_passed_to_from_pretrained(monkeypatch):
    from models import profile_config

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert profile_config._hub_kwargs() == {} and not profile_config.hub_offline()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert profile_config._hub_kwargs() == {"local_files_only": True}


def test_shipped_profiles_parse_with_real_hub_ids():
    profiles = {p.model_id: p for p in load_profiles(SHIPPED)}
    expected = {
        "wan-ai:wan2.1-vace@1.3b": ("WanVACEPipeline", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", 81, (832, 480)),
        "wan-ai:wan2.1-vace@14b": ("WanVACEPipeline", "Wan-AI/Wan2.1-VACE-14B-diffusers", 81, (1280, 720)),
        "skywork:skyreels-v2-df@1.3b-540p": (
            "SkyReelsV2DiffusionForcingPipeline",
            "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers",
            97,
            (960, 544),
        ),
    }
    assert set(profiles) == set(expected)
    for model_id, (pipeline, weights, window, native) in expected.items():
        profile = profiles[model_id]
        assert (profile.extra["pipeline"], profile.extra["weights"], profile.window_frames) == (
            pipeline,
            weights,
            window,
        )
        assert (profile.extra["native_width"], profile.extra["native_height"]) == native
        assert profile.extra["audio_weights"] == "stabilityai/stable-audio-open-1.0"
        assert profile.extra["prompt_extender"]["model"] == "Qwen/Qwen2.5-1.5B-Instruct"
        assert profile.extra["safety_checker"]["model"] == "openai/clip-vit-large-patch14"
        assert profile.extra["safety_checker"]["concepts"] == ["nudity", "graphic violence", "gore"]
        assert profile.prompt_extender_factory is not None and profile.safety_factory is not None


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
    """The tiny random ``WanVACEPipeline`` of the embedded default (``models.tiny``)."""
    from models.tiny import tiny_vace_pipeline as build

    return build(seed)


def tiny_skyreels_df_pipeline(seed: int = 0):
    """A tiny random ``SkyReelsV2DiffusionForcingPipeline`` (UniPC flow scheduler, as the real one)."""
    from diffusers import SkyReelsV2DiffusionForcingPipeline, SkyReelsV2Transformer3DModel, UniPCMultistepScheduler

    from models.tiny import tiny_wan_components, tiny_wan_transformer_config

    components = tiny_wan_components(seed)
    del components["transformer_2"]
    torch.manual_seed(seed)
    components["transformer"] = SkyReelsV2Transformer3DModel(**tiny_wan_transformer_config()).eval()
    components["scheduler"] = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=8.0
    )
    return SkyReelsV2DiffusionForcingPipeline(**components)


@pytest.fixture(scope="module")
def hub_dir(tmp_path_factory) -> Path:
    """A folder laid out like a local hub mirror: ``<owner>/<name>`` per shipped weights id, each
    holding a tiny random model of the right class saved with ``save_pretrained``."""
    from models.tiny import save_tiny_chat_lm, save_tiny_clip, save_tiny_stable_audio

    root = tmp_path_factory.mktemp("hub")
    tiny_vace_pipeline().save_pretrained(root / "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
    # The 14B profile has the same layout and class: one tiny VACE serves both ids.
    (root / "Wan-AI/Wan2.1-VACE-14B-diffusers").symlink_to(root / "Wan-AI/Wan2.1-VACE-1.3B-diffusers")
    tiny_skyreels_df_pipeline().save_pretrained(root / "Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers")
    save_tiny_stable_audio(root / "stabilityai/stable-audio-open-1.0")
    save_tiny_chat_lm(root / "Qwen/Qwen2.5-1.5B-Instruct")
    save_tiny_clip(root / "openai/clip-vit-large-patch14")
    return root


def shipped_with_local_weights(hub_dir: Path, tmp_path: Path) -> dict:
    """The shipped profile files with every hub id (``weights:``, and ``model:`` of the extender and
    checker) replaced by its folder under ``hub_dir``."""
    for source in SHIPPED.glob("*.yaml"):
        text = source.read_text()
        for line in text.splitlines():
            key, _, value = line.strip().removeprefix("- ").partition(":")
            hub_id = value.strip()
            if key in ("weights", "model") and hub_id and (hub_dir / hub_id).is_dir():
                text = text.replace(f"{key}: {hub_id}", f"{key}: {hub_dir / hub_id}")
        (tmp_path / source.name).write_text(text)
    return {p.model_id: p for p in load_profiles(tmp_path)}


@pytest.mark.parametrize(
    ("model_id", "pipeline"),
    [
        ("wan-ai:wan2.1-vace@1.3b", "WanVACEPipeline"),
        ("skywork:skyreels-v2-df@1.3b-540p", "SkyReelsV2DiffusionForcingPipeline"),
    ],
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


@pytest.mark.parametrize("model_id", ["wan-ai:wan2.1-vace@1.3b", "skywork:skyreels-v2-df@1.3b-540p"])
def test_shipped_extender_and_checker_load_tiny_models_offline(hub_dir, tmp_path, monkeypatch, model_id):
    from models.prompt_extend import TransformersExtender
    from models.safety import ClipSafetyChecker

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = shipped_with_local_weights(hub_dir, tmp_path)[model_id]
    assert str(hub_dir) in profile.extra["prompt_extender"]["model"]
    extender = profile.prompt_extender_factory()
    assert isinstance(extender, TransformersExtender) and extender.max_new_tokens == 256
    extender.max_new_tokens = 8  # random weights: the mechanics only, quickly
    extended = extender.extend("a red fox with @cub", seed=1)
    assert extended.startswith("a red fox with @cub") and extended == extender.extend("a red fox with @cub", seed=1)
    checker = profile.safety_factory()
    assert isinstance(checker, ClipSafetyChecker) and checker.concepts == ["nudity", "graphic violence", "gore"]
    assert checker.threshold == 0.5
    verdict = checker.check(np.zeros((3, 64, 112, 3), dtype=np.uint8))
    assert not verdict.flagged and 0 < verdict.score < 0.5


def test_the_14b_profile_loads_its_own_layout(hub_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    profile = shipped_with_local_weights(hub_dir, tmp_path)["wan-ai:wan2.1-vace@14b"]
    assert type(profile.video_factory().pipeline).__name__ == "WanVACEPipeline"


def test_a_wan_t2v_profile_renders_like_the_in_memory_tiny_wan(tmp_path):
    """WanPipeline through YAML: the saved tiny Wan renders bit-identically to the in-memory one
    (the embedded default itself is the tiny VACE, so the reference is built here)."""
    import yaml

    from models.tiny import save_tiny_wan, tiny_wan_pipeline
    from models.wan import WanVideoBackend

    video_backend = WanVideoBackend(tiny_wan_pipeline())
    embeds = video_backend.encode_prompt("a red fox runs through snow", "blurry")

    weights = save_tiny_wan(tmp_path / "wan")
    path = write(
        tmp_path,
        yaml.safe_dump({"profiles": [{**GOOD, "video": {"pipeline": "WanPipeline", "weights": str(weights)}}]}),
    )
    [profile] = load_profiles(path)
    backend = profile.video_factory()
    latents = make_latents(backend, seed=5)
    np.testing.assert_array_equal(
        backend.render_chunk(make_request(embeds, latents)), video_backend.render_chunk(make_request(embeds, latents))
    )


def test_chunk_mode_is_read_into_the_profile_and_checked(tmp_path):
    from models.profile_config import ProfileConfigError, load_profiles

    text = (
        "profiles:\n"
        "  - model: acme:seq@1\n"
        "    video: {pipeline: WanVACEPipeline, weights: /nowhere}\n"
        "    window_frames: 81\n"
        "    overlap_frames: 17\n"
        "    native: {area: 399360}\n"
        "    chunk_mode: {mode}\n"
    )
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("{mode}", "sequential"))
    [profile] = load_profiles(path)
    assert profile.chunk_mode == "sequential" and profile.takes_conditioning  # the typed fields
    assert profile.extra["chunk_mode"] == "sequential"  # still listed by `farm models`
    path.write_text(text.replace("{mode}", "sideways"))
    with pytest.raises(ProfileConfigError, match=r"profiles\[0\]\.chunk_mode"):
        load_profiles(path)
    # Sequential chunks are conditioned on the previous chunk's tail: a text-to-video pipeline cannot.
    path.write_text(text.replace("{mode}", "sequential").replace("WanVACEPipeline", "WanPipeline"))
    with pytest.raises(ProfileConfigError, match=r"profiles\[0\]\.chunk_mode: sequential needs .*WanVACEPipeline"):
        load_profiles(path)


def test_chunk_mode_defaults_to_parallel_and_conditioning_follows_the_pipeline():
    profile = parse_profile(GOOD)
    assert (profile.chunk_mode, profile.takes_conditioning) == ("parallel", False)
    vace = parse_profile({**GOOD, "video": {"pipeline": "WanVACEPipeline", "weights": "w"}})
    assert (vace.chunk_mode, vace.takes_conditioning) == ("parallel", True)


def test_every_error_of_a_file_is_reported_at_once(tmp_path):
    import yaml

    bad = [{**GOOD, "steps": 0, "video": {"pipeline": "WanPipeline", "weights": ""}}, {**GOOD, "window_frames": 80}]
    lines = error_of(tmp_path, yaml.safe_dump({"profiles": [GOOD, *bad]})).splitlines()
    source = tmp_path / "profiles.yaml"
    assert lines == [
        f"{source}: profiles[1].video.weights: must be a non-empty string, got ''",
        f"{source}: profiles[1].steps: must be >= 1, got 0",
        f"{source}: profiles[2].window_frames: must be 4k+1, got 80",
    ]
