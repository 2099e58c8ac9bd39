"""The toy GP profile (``farm:toy-gp@1``): what the farm knows about the toy model, torch-free.

The model itself is ``models.toy_gp.ToyGPBackend``; its factory here imports it in the worker
that builds it, so reading the profile (the scheduler does) loads neither torch nor the model.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from models.base import ModelProfile
from models.prompt_extend import TemplateExtender
from models.weights import TINY_SEED

if TYPE_CHECKING:
    from models.toy_gp import ToyGPConfig

#: Model id the farm owner registers the toy profile under.
TOY_GP_MODEL = "farm:toy-gp@1"

#: Native area of the toy profile: 224x128 for 16:9 (4x the tiny default's), so the seam metric
#: averages over 16x28 independent latent pixels per frame: at 112x64 the chance fluctuation of a
#: seamless clip's SJR max is about twice as large (1.15 instead of 1.08 over 39 seams). A 15 s
#: clip still denoises and decodes in about a second.
TOY_NATIVE_AREA = 224 * 128

#: Denoising steps of the toy profile (an Euler step is a T x T matrix product: microseconds).
TOY_STEPS = 8

#: Audio steps of the toy profile: the tiny default's Stable Audio, at the tiny default's steps.
TOY_AUDIO_STEPS = 4

#: Frames per latent frame (as Wan's VAE): chunk starts are multiples of it.
TOY_TEMPORAL_STRIDE = 4


def _toy_backend(config: ToyGPConfig | None) -> Any:
    from models.toy_gp import ToyGPBackend

    return ToyGPBackend(config)


def _tiny_audio_backend(seed: int) -> Any:
    from models.profiles import tiny_audio_backend

    return tiny_audio_backend(seed)


def _tiny_safety_checker(seed: int) -> Any:
    from models.profiles import tiny_safety_checker

    return tiny_safety_checker(seed)


def toy_gp_profile(
    model_id: str = TOY_GP_MODEL, *, seed: int = TINY_SEED, config: ToyGPConfig | None = None
) -> ModelProfile:
    """The toy GP profile: the tiny default's 17-frame windows overlapping by 5, 224x128 native
    (16:9), ``TOY_STEPS`` steps, ``chunkMode: codenoise`` unless a task says otherwise; the tiny
    default's Stable Audio, template prompt extender and CLIP safety checker (random weights from
    ``seed``), so a task renders end to end with audio."""
    return ModelProfile(
        model_id=model_id,
        description="Analytic Gaussian-process video denoiser (no weights; smooth colour fields; for seam studies)",
        window_frames=17,
        overlap_frames=5,
        temporal_stride=TOY_TEMPORAL_STRIDE,
        native_area=TOY_NATIVE_AREA,
        native_multiple=16,
        num_inference_steps=TOY_STEPS,
        guidance_scale=1.0,
        audio_steps=TOY_AUDIO_STEPS,
        video_factory=functools.partial(_toy_backend, config),
        audio_factory=functools.partial(_tiny_audio_backend, seed),
        prompt_extender_factory=TemplateExtender,
        safety_factory=functools.partial(_tiny_safety_checker, seed),
        takes_conditioning=False,
        # Co-denoising is the toy's point: seams at chance level (benchmarks/codenoise.py).
        chunk_mode="codenoise",
        # ``pipeline`` and ``weights`` are what ``farm models`` shows.
        extra={"toy": True, "seed": seed, "pipeline": "ToyGPBackend (closed form)", "weights": "none"},
    )
