"""Ray actors that hold the models: one ``VideoWorker`` per GPU, one dedicated ``AudioWorker``.

Each actor builds its backend once, in its own process, from the profile's factory; after that
every call is pure computation on the arguments it gets, so a chunk renders to the same frames on
whichever worker runs it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import ray
import torch

from farm.domain.errors import TaskCancelledError
from farm.domain.planner import ChunkPlan
from farm.workers.noise import latent_noise
from models.base import AudioRequest, ChunkConditioning, ChunkRequest, ModelProfile, PromptEmbeds


@dataclass(frozen=True, kw_only=True)
class ChunkWork:
    """One chunk of one result, as sent to a ``VideoWorker``."""

    result_index: int
    chunk: ChunkPlan
    seed: int
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    #: Set when the render may be cancelled: the worker asks ``cancel_flags`` (a ``CancelFlags``
    #: actor handle) about it after every denoising step.
    cancel_token: str | None = None
    cancel_flags: object = None
    #: Known frames, masks and reference images of this chunk (``farm.render.conditioning``).
    conditioning: ChunkConditioning | None = None
    #: ``fast`` (first, middle and last frame) or ``full`` (every frame): the worker runs the
    #: profile's safety checker on the chunk's frames; ``none``: no check.
    safety_mode: str = "none"


#: A worker asks the ``CancelFlags`` actor at most this often (and always after the first step):
#: real models take a second or more per step, so every step is checked; tiny CPU models take
#: ~20 ms, where asking after every step cost a fifth of a core.
CANCEL_POLL_S = 0.1


def _cancel_check(token: str | None, flags, unit: tuple[int, int] | None = None) -> Callable[[int, int], None] | None:
    """A step callback raising ``TaskCancelledError`` once ``token``'s render is cancelled.

    With ``unit`` (result index, chunk index) the same call reports the chunk's denoising step, so
    the driver can show progress inside chunks (``CancelFlags.progress``)."""
    if token is None or flags is None:
        return None
    last = [0.0]

    def on_step(step: int, total: int) -> None:
        now = time.monotonic()
        if step and step + 1 < total and now - last[0] < CANCEL_POLL_S:
            return
        last[0] = now
        if unit is None:
            cancelled = ray.get(flags.is_cancelled.remote(token))
        else:
            cancelled = ray.get(flags.report.remote(token, unit[0], unit[1], step + 1, total))
        if cancelled:
            raise TaskCancelledError(f"render {token} cancelled at step {step + 1}/{total}")

    return on_step


#: Name and Ray namespace of the ``CancelFlags`` actor (a named namespace: every driver of the
#: cluster finds the same actor, and Ray does not warn about detached anonymous actors).
CANCEL_FLAGS_ACTOR = "farm-cancel-flags"
CANCEL_FLAGS_NAMESPACE = "farm"


class CancelFlags:
    """Tokens of cancelled renders (wrapped by ``ray.remote`` as one small named actor).

    Ray cannot interrupt a running method of a synchronous actor, so a worker asks this actor after
    every denoising step whether its render was cancelled and raises ``TaskCancelledError`` if so;
    the chunk stops within one step and the worker is free for the next task.
    """

    def __init__(self):
        self._tokens: set[str] = set()
        #: token -> {(result index, chunk index): (steps done, steps total)}
        self._steps: dict[str, dict[tuple[int, int], tuple[int, int]]] = {}

    def cancel(self, token: str) -> None:
        """Mark ``token``'s render as cancelled."""
        self._tokens.add(token)

    def clear(self, token: str) -> None:
        """Forget ``token`` once no chunk of its render can still be running."""
        self._tokens.discard(token)
        self._steps.pop(token, None)

    def report(self, token: str, result_index: int, chunk_index: int, step: int, total: int) -> bool:
        """A chunk of ``token``'s render finished denoising step ``step`` of ``total``; returns
        whether the render was cancelled (one call per step does both)."""
        self._steps.setdefault(token, {})[(result_index, chunk_index)] = (step, total)
        return token in self._tokens

    def progress(self, token: str) -> dict[tuple[int, int], tuple[int, int]]:
        """The last step reported by each chunk of ``token``'s render."""
        return dict(self._steps.get(token, {}))

    def is_cancelled(self, token: str) -> bool:
        """Whether ``token``'s render was cancelled."""
        return token in self._tokens


def cancel_flags():
    """The named ``CancelFlags`` actor, started on first use (no CPU reserved: it only answers).

    Detached so it is started once per cluster rather than once per render (a named actor is
    otherwise collected when the last handle goes away).
    """
    return (
        ray.remote(CancelFlags)
        .options(
            name=CANCEL_FLAGS_ACTOR,
            namespace=CANCEL_FLAGS_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_concurrency=64,
        )
        .remote()
    )


def shutdown_cancel_flags() -> None:
    """Kill the detached ``CancelFlags`` actor, if any (a gateway shutting down its workers)."""
    if not ray.is_initialized():
        return
    try:
        ray.kill(ray.get_actor(CANCEL_FLAGS_ACTOR, namespace=CANCEL_FLAGS_NAMESPACE))
    except ValueError:  # never started
        pass


@dataclass(frozen=True, kw_only=True)
class ChunkOutput:
    """A rendered chunk: native-size uint8 frames and how long the model took."""

    result_index: int
    chunk_index: int
    frames: np.ndarray
    seconds: float
    #: Wall-clock (``time.time``) start of the model call, for activity timelines.
    started_at: float
    worker_pid: int
    #: The safety checker's verdict on the chunk (``models.safety.SafetyVerdict``; ``frame`` is
    #: chunk-local), or None when not checked.
    safety: object = None


@dataclass(frozen=True, kw_only=True)
class AudioOutput:
    """A result's audio at the backend's sample rate."""

    result_index: int
    samples: np.ndarray
    sample_rate: int
    seconds: float
    started_at: float


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
        self._extender = None
        self._checker = None
        self.load_seconds = time.perf_counter() - started

    def ready(self) -> float:
        """Seconds the backend took to load; returns once the actor is usable."""
        return self.load_seconds

    def extend_prompt(self, prompt: str, seed: int) -> str | None:
        """``prompt`` extended by the profile's extender (None when the profile has none)."""
        if self._profile.prompt_extender_factory is None:
            return None
        if self._extender is None:
            self._extender = self._profile.prompt_extender_factory()
        with torch.inference_mode():
            return self._extender.extend(prompt, seed=seed)

    def _safety(self, frames: np.ndarray, mode: str):
        """The checker's verdict on ``frames`` (``fast``: first, middle, last), frame chunk-local."""
        if self._checker is None:
            if self._profile.safety_factory is None:
                raise ValueError(f"profile {self._profile.model_id!r} has no safety checker")
            self._checker = self._profile.safety_factory()
        n = len(frames)
        picked = sorted({0, n // 2, n - 1}) if mode == "fast" else list(range(n))
        with torch.inference_mode():
            verdict = self._checker.check(frames[picked])
        if verdict.frame is not None:
            verdict = dataclasses.replace(verdict, frame=picked[verdict.frame])
        return verdict

    def encode_prompt(self, prompt: str, negative_prompt: str | None = None) -> PromptEmbeds:
        """Text conditioning for the task (computed once, shared by every chunk)."""
        with torch.inference_mode():
            return self._backend.encode_prompt(prompt, negative_prompt)

    def supports_conditioning(self) -> bool:
        """Whether the backend takes keyframes, masks and reference images."""
        return bool(getattr(self._backend, "supports_conditioning", False))

    def render_chunk(self, work: ChunkWork, prompt: PromptEmbeds) -> ChunkOutput:
        """Render ``work.chunk`` from its slice of the result's global noise."""
        started_at = time.time()
        started = time.perf_counter()
        shape = self._backend.latent_frame_shape(work.height, work.width)
        latents = latent_noise(work.seed, work.chunk.latent_start, work.chunk.latent_frames, shape)
        request = ChunkRequest(
            chunk_index=work.chunk.index,
            prompt=prompt,
            latents=latents,
            num_frames=work.chunk.num_frames,
            height=work.height,
            width=work.width,
            num_inference_steps=work.num_inference_steps,
            guidance_scale=work.guidance_scale,
            seed=work.seed,
            conditioning=work.conditioning,
        )
        with torch.inference_mode():
            frames = self._backend.render_chunk(
                request, _cancel_check(work.cancel_token, work.cancel_flags, (work.result_index, work.chunk.index))
            )
        verdict = self._safety(frames, work.safety_mode) if work.safety_mode != "none" else None
        return ChunkOutput(
            result_index=work.result_index,
            chunk_index=work.chunk.index,
            frames=frames,
            seconds=time.perf_counter() - started,
            started_at=started_at,
            worker_pid=os.getpid(),
            safety=verdict,
        )


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

    def render(
        self, result_index: int, request: AudioRequest, cancel_token: str | None = None, cancel_flags=None
    ) -> AudioOutput:
        """The clip's audio, at least ``request.duration_s`` long; stops at the next denoising step
        once ``cancel_token``'s render is cancelled (``TaskCancelledError``)."""
        started_at = time.time()
        started = time.perf_counter()
        with torch.inference_mode():
            samples = self._backend.render(request, _cancel_check(cancel_token, cancel_flags))
        return AudioOutput(
            result_index=result_index,
            samples=np.asarray(samples, dtype=np.float32),
            sample_rate=self._backend.sample_rate,
            seconds=time.perf_counter() - started,
            started_at=started_at,
        )
