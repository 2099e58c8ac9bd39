"""Ray actors that hold the models: ``VideoWorker`` (one per GPU) and ``AudioWorker``.

Each actor builds its backend once, in its own process, from the profile's factory; after that
every call is pure computation on the arguments it gets, so a chunk renders to the same frames on
whichever worker runs it. Calls that produce frames or audio return two objects (``num_returns=2``):
small metadata the scheduler reads, and the array it hands on to a finisher without reading.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import torch

from farm.workers.cancel import step_callback
from farm.workers.messages import (
    AudioMeta,
    AudioWork,
    ChunkMeta,
    ChunkWork,
    ClipConditioning,
    PromptWork,
    SafetyFinding,
)
from farm.workers.noise import latent_noise
from models.base import AudioRequest, ChunkRequest, ModelProfile, PromptEmbeds


def _set_threads(torch_threads: int | None) -> None:
    if torch_threads:
        torch.set_num_threads(torch_threads)


class VideoWorker:
    """Renders temporal chunks with the profile's video backend (wrapped by ``ray.remote``)."""

    def __init__(self, profile: ModelProfile, torch_threads: int | None = 1):
        _set_threads(torch_threads)
        started = time.perf_counter()
        self._profile = profile
        self._backend = profile.video_factory()
        # The prompt extender and the safety checker load on first use (most tasks need neither).
        self._extender: Any = None
        self._checker: Any = None
        self.load_seconds = time.perf_counter() - started

    def ready(self) -> float:
        """Seconds the backend took to load; returns once the actor is usable."""
        return self.load_seconds

    def pid(self) -> int:
        """The actor's process id (tests kill workers by it)."""
        return os.getpid()

    def extend_prompt(self, prompt: str, seed: int) -> str | None:
        """``prompt`` extended by the profile's extender (None when the profile has none)."""
        if self._profile.prompt_extender_factory is None:
            return None
        if self._extender is None:
            self._extender = self._profile.prompt_extender_factory()
        with torch.inference_mode():
            return self._extender.extend(prompt, seed=seed)

    def encode_prompt(self, prompt: str, negative_prompt: str | None = None) -> PromptEmbeds:
        """Text conditioning for the task (computed once, shared by every chunk)."""
        with torch.inference_mode():
            return self._backend.encode_prompt(prompt, negative_prompt)

    def prompt(self, work: PromptWork) -> tuple[str | None, PromptEmbeds]:
        """Extend (when asked) and encode a task's prompt: ``(extended or None, embeddings)``.

        Called with ``num_returns=2``: the embeddings stay in the object store for every chunk."""
        extended = self.extend_prompt(work.prompt, work.extend_seed) if work.extend_seed is not None else None
        return extended, self.encode_prompt(extended or work.prompt, work.negative_prompt)

    def supports_conditioning(self) -> bool:
        """Whether the backend takes keyframes, masks and reference images."""
        return bool(getattr(self._backend, "supports_conditioning", False))

    def _safety(self, frames: np.ndarray, mode: str) -> SafetyFinding:
        """The checker's verdict on ``frames`` (``fast``: first, middle, last), frame chunk-local."""
        if self._checker is None:
            if self._profile.safety_factory is None:
                raise ValueError(f"profile {self._profile.model_id!r} has no safety checker")
            self._checker = self._profile.safety_factory()
        n = len(frames)
        picked = sorted({0, n // 2, n - 1}) if mode == "fast" else list(range(n))
        with torch.inference_mode():
            verdict = self._checker.check(frames[picked])
        frame = picked[verdict.frame] if verdict.frame is not None else None
        return SafetyFinding(flagged=verdict.flagged, concept=verdict.concept, score=verdict.score, frame=frame)

    def chunk(
        self,
        work: ChunkWork,
        prompt: PromptEmbeds,
        conditioning: ClipConditioning | None = None,
        tail: np.ndarray | None = None,
    ) -> tuple[ChunkMeta, np.ndarray]:
        """Render ``work.chunk`` from its slice of the result's global noise.

        ``conditioning`` is the task's clip conditioning (this chunk's share is cut here);
        ``tail`` the previous chunk's frames in sequential mode. Called with ``num_returns=2``.
        """
        started_at = time.time()
        started = time.perf_counter()
        chunk = work.chunk
        extra = None
        if tail is not None and work.tail_start is not None:
            extra = {g: tail[g - work.tail_start] for g in range(chunk.start, work.tail_start + len(tail))}
        share = conditioning.for_chunk(chunk, extra) if conditioning is not None else None
        if share is None and extra:
            share = ClipConditioning(frames=extra).for_chunk(chunk)
        shape = self._backend.latent_frame_shape(work.height, work.width)
        request = ChunkRequest(
            chunk_index=chunk.index,
            prompt=prompt,
            latents=latent_noise(work.seed, chunk.latent_start, chunk.latent_frames, shape),
            num_frames=chunk.num_frames,
            height=work.height,
            width=work.width,
            num_inference_steps=work.num_inference_steps,
            guidance_scale=work.guidance_scale,
            seed=work.seed,
            conditioning=share,
        )
        with torch.inference_mode():
            frames = self._backend.render_chunk(
                request, step_callback(work.cancel_token, (work.result_index, chunk.index))
            )
        finding = self._safety(frames, work.safety_mode) if work.safety_mode != "none" else None
        meta = ChunkMeta(
            task_uuid=work.task_uuid,
            result_index=work.result_index,
            chunk_index=chunk.index,
            seconds=time.perf_counter() - started,
            started_at=started_at,
            worker_pid=os.getpid(),
            num_frames=len(frames),
            safety=finding,
        )
        return meta, frames


class AudioWorker:
    """Renders whole-clip audio with the profile's audio backend (wrapped by ``ray.remote``)."""

    def __init__(self, profile: ModelProfile, torch_threads: int | None = 1):
        _set_threads(torch_threads)
        if profile.audio_factory is None:
            raise ValueError(f"profile {profile.model_id!r} has no audio backend")
        started = time.perf_counter()
        self._backend = profile.audio_factory()
        self.load_seconds = time.perf_counter() - started

    def ready(self) -> float:
        """Seconds the backend took to load; returns once the actor is usable."""
        return self.load_seconds

    def pid(self) -> int:
        """The actor's process id."""
        return os.getpid()

    def audio(self, work: AudioWork, conditioning: ClipConditioning | None = None) -> tuple[AudioMeta, np.ndarray]:
        """The clip's audio (``float32 [channels, n]``), at least ``work.duration_s`` long; the first
        reference group's voice, if any, steers it. Stops at the next step once cancelled.
        Called with ``num_returns=2``."""
        started_at = time.time()
        started = time.perf_counter()
        voice, voice_rate = conditioning.voice if conditioning is not None and conditioning.voice else (None, 0)
        request = AudioRequest(
            prompt=work.prompt,
            duration_s=work.duration_s,
            seed=work.seed,
            num_inference_steps=work.num_inference_steps,
            voice=voice,
            voice_rate=voice_rate,
        )
        with torch.inference_mode():
            samples = self._backend.render(request, step_callback(work.cancel_token))
        meta = AudioMeta(
            task_uuid=work.task_uuid,
            result_index=work.result_index,
            seconds=time.perf_counter() - started,
            started_at=started_at,
            sample_rate=self._backend.sample_rate,
        )
        return meta, np.asarray(samples, dtype=np.float32)


__all__ = ["AudioWorker", "VideoWorker"]
