"""``AudioBackend`` over a diffusers ``StableAudioPipeline`` (Stable Audio Open or the tiny one)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from diffusers import StableAudioPipeline

from models.base import AudioRequest, StepCallback
from models.wan import align_cpu_weights

#: Hub id of Stable Audio Open 1.0 (gated on the hub: mount the weights or log in first).
from models.weights import DEFAULT_STABLE_AUDIO_WEIGHTS

#: Stride between the seeds of successive pieces of an over-long clip (see ``render``).
_PIECE_SEED_STRIDE = 1_000_003


class StableAudioBackend:
    """Renders a clip's audio with a ``StableAudioPipeline``, deterministically from the seed.

    The initial noise comes from a CPU ``torch.Generator`` seeded with ``request.seed``, so the
    waveform is the same on any device and in any process. One pipeline call covers up to
    ``max_duration_s`` (the DiT's ``sample_size`` x the VAE hop: 47.5 s for Stable Audio Open,
    16.4 s for the tiny model, both over the farm's 15 s limit). A longer request is rendered in
    equal consecutive pieces, each with its own derived seed, joined end to end (hard cuts: no
    model here can continue a waveform).
    """

    def __init__(
        self,
        pipeline: StableAudioPipeline,
        *,
        guidance_scale: float = 7.0,
        negative_prompt: str | None = None,
    ) -> None:
        """Wrap ``pipeline`` (already on its device and dtype); ``guidance_scale`` applies to every render."""
        self.pipeline = pipeline
        pipeline.set_progress_bar_config(disable=True)
        self.guidance_scale = guidance_scale
        self.negative_prompt = negative_prompt
        self.sample_rate: int = int(pipeline.vae.config.sampling_rate)
        self.channels: int = int(pipeline.vae.config.audio_channels)
        hop = int(np.prod(pipeline.vae.config.downsampling_ratios))
        self.max_duration_s: float = int(pipeline.transformer.config.sample_size) * hop / self.sample_rate

    @classmethod
    def from_pretrained(
        cls,
        path_or_hub_id: str = DEFAULT_STABLE_AUDIO_WEIGHTS,
        *,
        torch_dtype: torch.dtype | None = None,
        device: str | torch.device | None = None,
        guidance_scale: float = 7.0,
        **kwargs: Any,
    ) -> StableAudioBackend:
        """Load a Stable Audio checkpoint (diffusers layout) from a local folder or hub id.

        ``torch_dtype`` defaults to float16 on a GPU and float32 on the CPU. Stable Audio Open's
        scheduler (``CosineDPMSolverMultistepScheduler``) needs the ``torchsde`` package; extra
        ``kwargs`` go to ``StableAudioPipeline.from_pretrained`` (``HF_HUB_OFFLINE`` is honoured).
        """
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if torch_dtype is None:
            torch_dtype = torch.float16 if device.type == "cuda" else torch.float32
        pipe = StableAudioPipeline.from_pretrained(path_or_hub_id, dtype=torch_dtype, **kwargs)
        pipe.to(device)
        align_cpu_weights(pipe)
        return cls(pipe, guidance_scale=guidance_scale)

    def _render_piece(
        self,
        prompt: str,
        samples: int,
        seed: int,
        steps: int,
        voice: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
    ) -> np.ndarray:
        """``float32 [channels, samples]`` from one pipeline call; ``samples`` fits ``max_duration_s``.

        ``voice`` (``[channels, n]`` at ``sample_rate``) is the pipeline's initial audio: the
        generation starts from its latents, which carries its timbre into the result.
        """
        # Ask for half a sample more than needed: the pipeline floors ``end x rate`` to samples.
        end_s = min((samples + 0.5) / self.sample_rate, self.max_duration_s)
        extra = {}
        if voice is not None:
            voice = voice.to(device=self.pipeline._execution_device, dtype=self.pipeline.vae.dtype)
            extra = {"initial_audio_waveforms": voice[None], "initial_audio_sampling_rate": self.sample_rate}
        if on_step is not None:
            extra["callback"] = lambda i, t, latents: on_step(i, steps)
        with torch.inference_mode():
            audio = self.pipeline(
                prompt,
                audio_end_in_s=end_s,
                num_inference_steps=steps,
                guidance_scale=self.guidance_scale,
                negative_prompt=self.negative_prompt,
                generator=torch.Generator("cpu").manual_seed(seed),
                output_type="np",
                **extra,
            ).audios[0]
        audio = np.asarray(audio, dtype=np.float32)
        if audio.shape[1] < samples:  # only when end_s hit the cap: at most a sample or two
            audio = np.pad(audio, ((0, 0), (0, samples - audio.shape[1])))
        return audio[:, :samples]

    def _voice(self, request: AudioRequest) -> torch.Tensor | None:
        """The voice reference resampled to the model's rate and channels, or None."""
        if request.voice is None:
            return None
        voice = np.asarray(request.voice, dtype=np.float32)
        if voice.ndim == 1:
            voice = voice[None]
        channels = int(self.pipeline.vae.config.audio_channels)
        if voice.shape[0] != channels:
            voice = np.repeat(voice.mean(axis=0, keepdims=True), channels, axis=0)
        if request.voice_rate != self.sample_rate and voice.shape[1] > 1:
            n = max(1, round(voice.shape[1] * self.sample_rate / request.voice_rate))
            src = np.arange(voice.shape[1]) / request.voice_rate
            dst = np.arange(n) / self.sample_rate
            voice = np.stack([np.interp(dst, src, channel) for channel in voice]).astype(np.float32)
        limit = int(self.max_duration_s * self.sample_rate)
        return torch.from_numpy(np.ascontiguousarray(voice[:, :limit]))

    def render(self, request: AudioRequest, on_step: StepCallback | None = None) -> np.ndarray:
        """Audio of ``request.prompt``: ``float32 [channels, ceil(duration_s x sample_rate)]`` in ``[-1, 1]``.

        A voice reference (``request.voice``) seeds every piece's initial audio; ``on_step`` is
        called after each denoising step and may raise to cancel."""
        if request.duration_s <= 0:
            raise ValueError(f"duration_s must be positive, got {request.duration_s}")
        total = math.ceil(request.duration_s * self.sample_rate)
        pieces = math.ceil(request.duration_s / self.max_duration_s)
        voice = self._voice(request)
        bounds = [total * i // pieces for i in range(pieces + 1)]
        parts = [
            self._render_piece(
                request.prompt,
                bounds[i + 1] - bounds[i],
                (request.seed + i * _PIECE_SEED_STRIDE) % 2**63,
                request.num_inference_steps,
                voice,
                on_step,
            )
            for i in range(pieces)
        ]
        audio = parts[0] if pieces == 1 else np.concatenate(parts, axis=1)
        return np.ascontiguousarray(np.clip(audio, -1.0, 1.0), dtype=np.float32)
