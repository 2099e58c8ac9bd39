"""Ray actors that hold the models: ``VideoWorker`` (one per GPU) and ``AudioWorker``.

Each actor builds its backend once, in its own process, from the profile's factory; after that
every call is pure computation on the arguments it gets, so a chunk renders to the same frames on
whichever worker runs it. Calls that produce frames or audio return two objects (``num_returns=2``):
small metadata the scheduler reads, and the frames it hands on to a finisher without reading.

Frames leave a worker as yuv420p planes (``Yuv420Frames``: half the bytes of RGB24 through the
object store) unless the work asks for RGB (``wire_format``). The conversion runs where the frames
are: the Triton kernel on the GPU (the backend's device), swscale on a CPU worker (``frames_to_wire``).
The safety checker sees the RGB frames before it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from farm.domain.errors import TaskCancelledError
from farm.workers.cancel import CANCEL_POLL_S, LocalCancelFlags, cancel_flags, step_callback
from farm.workers.inline import fetch_all
from farm.workers.messages import (
    AudioMeta,
    AudioWork,
    CheckpointLostError,
    ChunkMeta,
    ChunkWork,
    ClipConditioning,
    PromptWork,
    SafetyFinding,
    WindowKey,
    WindowsReply,
    WindowWork,
    WireFormat,
    Yuv420Frames,
    resolve_wire_format,
)
from farm.workers.noise import latent_noise
from models.base import AudioRequest, ChunkRequest, ModelProfile, PromptEmbeds


def _set_threads(torch_threads: int | None) -> None:
    if torch_threads:
        torch.set_num_threads(torch_threads)


class VideoWorker:
    """Renders temporal chunks with the profile's video backend (wrapped by ``ray.remote``, or
    called on a thread of the in-process executor, ``farm.render.inprocess``, with its ``flags``)."""

    def __init__(self, profile: ModelProfile, torch_threads: int | None = 1, *, flags: LocalCancelFlags | None = None):
        _set_threads(torch_threads)
        started = time.perf_counter()
        self._profile = profile
        #: In-process cancel flags (None: the named ``CancelFlags`` actor).
        self._local_flags = flags
        self._backend = profile.video_factory()
        # The conditioning a text-only chunk needs (VACE's blank video) is encoded now, at load, so
        # the first chunk renders at warm speed (models.wan ``prime``).
        prime = getattr(self._backend, "prime", None)
        if prime is not None:
            width, height = profile.native_size(16, 9)
            with torch.inference_mode():
                prime(profile.window_frames, height, width)
        # The prompt extender and the safety checker load on first use (most tasks need neither).
        self._extender: Any = None
        self._checker: Any = None
        self.load_seconds = time.perf_counter() - started

    def ready(self) -> float:
        """Seconds the backend took to load; returns once the actor is usable."""
        return self.load_seconds

    def use_local_flags(self, flags: LocalCancelFlags | None) -> None:
        """Ask ``flags`` after each denoising step from now on (an in-process worker handed to
        the next task's executor)."""
        self._local_flags = flags

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
        tail: np.ndarray | Yuv420Frames | None = None,
    ) -> tuple[ChunkMeta, np.ndarray | Yuv420Frames]:
        """Render ``work.chunk`` from its slice of the result's global noise.

        ``conditioning`` is the task's clip conditioning (this chunk's share is cut here);
        ``tail`` the previous chunk's frames in sequential mode, as that chunk returned them.
        Returns the frames in ``work.wire_format`` (``frames_to_wire``). Called with ``num_returns=2``.
        """
        started_at = time.time()
        started = time.perf_counter()
        chunk = work.chunk
        wire_format = resolve_wire_format(work.wire_format)  # a bad value fails before rendering
        extra = None
        if tail is not None and work.tail_start is not None:
            known = frames_from_wire(tail, start=chunk.start - work.tail_start)  # the overlap only
            extra = {g: known[g - chunk.start] for g in range(chunk.start, work.tail_start + len(tail))}
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
                request, step_callback(work.cancel_token, (work.result_index, chunk.index), self._local_flags)
            )
        finding = self._safety(frames, work.safety_mode) if work.safety_mode != "none" else None
        wire = frames_to_wire(frames, wire_format, self._device())
        meta = ChunkMeta(
            task_uuid=work.task_uuid,
            result_index=work.result_index,
            chunk_index=chunk.index,
            seconds=time.perf_counter() - started,
            started_at=started_at,
            worker_pid=os.getpid(),
            num_frames=len(wire),
            safety=finding,
        )
        return meta, wire

    def _device(self) -> Any:
        """The backend's torch device (None when it names none: the CPU)."""
        return getattr(self._backend, "device", None)

    # -- co-denoising (chunkMode: codenoise): windows kept here across steps ---------------------
    #
    # The lockstep driver (``farm.render.codenoise.LockstepDriver``) calls these, one call per
    # step per worker: it sends each worker the fused overlap slices of its windows' predictions
    # and gets back the slices of the next step's. A worker may own several windows; each is
    # computed on its own (never batched), so a window's bits do not depend on who owns it.

    def _codenoise_windows(self) -> dict[WindowKey, _Window]:
        # Created on first use: workers that never co-denoise carry nothing.
        return self.__dict__.setdefault("_windows", {})

    def _stepped_backend(self) -> Any:
        if "_stepped" not in self.__dict__:
            from models.stepped import as_stepped

            self._stepped = as_stepped(self._backend)
        return self._stepped

    def windows_begin(
        self,
        keys: list[WindowKey],
        works: list[WindowWork],
        prompt: PromptEmbeds,
        conditioning: ClipConditioning | None = None,
        checkpoints: list | None = None,
    ) -> WindowsReply:
        """Start windows ``keys`` (one per ``works`` entry) from their slices of the result's
        global noise, or from ``checkpoints`` (one latent object reference per window, taken by
        ``windows_latents``; the driver then carries on after the checkpoint's step). Windows
        already held under these keys are replaced. Returns the schedule's length and the
        checksums of the shared latent frames (nothing predicted yet).

        Raises ``CheckpointLostError`` when a checkpoint cannot be fetched any more."""
        started_at = time.time()
        started = time.perf_counter()
        backend = self._stepped_backend()
        saved = [None] * len(keys)
        if checkpoints is not None:
            try:
                saved = fetch_all(list(checkpoints))
            except Exception as error:  # any failure to fetch means: start from noise
                raise CheckpointLostError(f"latent checkpoint lost: {error}") from error
        table = self._codenoise_windows()
        num_steps = 0
        with torch.inference_mode():
            for key, work, latents in zip(keys, works, saved):
                request = window_request(backend, work, prompt, conditioning, latents)
                state = backend.begin_window(request)
                num_steps = backend.num_steps(state)
                shared = torch.tensor(work.shared, dtype=torch.long)
                table[key] = _Window(work=work, state=state, shared=shared, started_at=started_at)
        seconds = time.perf_counter() - started
        for key in keys:
            table[key].seconds += seconds / len(keys)
        return WindowsReply(
            checksums={key: self._checksums(backend, table[key]) for key in keys},
            num_steps=num_steps,
            resumable=bool(getattr(backend, "resumable", False)),
            seconds=seconds,
        )

    def windows_predict(self, keys: list[WindowKey], step: int) -> WindowsReply:
        """Predict ``step`` for each window; keep the predictions, return their shared slices."""
        started = time.perf_counter()
        predictions = self._predict_windows(keys, step)
        return WindowsReply(predictions=predictions, seconds=time.perf_counter() - started)

    def windows_step(
        self, keys: list[WindowKey], step: int, fused: dict[WindowKey, np.ndarray], predict_next: bool = True
    ) -> WindowsReply:
        """Write the ``fused`` overlap slices into each window's kept prediction of ``step``, take
        the scheduler step, report it (progress, and ``TaskCancelledError`` once the render is
        cancelled), then, with ``predict_next``, predict ``step + 1``: one call per step.

        Returns the checksums of the shared latent frames after the step and the next slices."""
        started = time.perf_counter()
        backend = self._stepped_backend()
        table = self._codenoise_windows()
        windows = [self._window(key) for key in keys]
        with torch.inference_mode():
            for key, window in zip(keys, windows):
                if window.prediction is None:
                    raise ValueError(f"window {key} has no prediction of step {step} to take")
                tick = time.perf_counter()
                write_fused(window.prediction, window.shared, fused.get(key))
                backend.step(window.state, step, window.prediction)
                window.prediction = None
                window.seconds += time.perf_counter() - tick
        total = backend.num_steps(windows[0].state) if windows else 0
        checksums = {key: self._checksums(backend, table[key]) for key in keys}
        stepped = time.perf_counter() - started
        self._report_windows(windows, step, total)
        tick = time.perf_counter()
        predictions = self._predict_windows(keys, step + 1) if predict_next else {}
        return WindowsReply(
            predictions=predictions,
            checksums=checksums,
            num_steps=total,
            seconds=stepped + time.perf_counter() - tick,
        )

    def windows_latents(self, keys: list[WindowKey]) -> Any:
        """A checkpoint: each window's current latents, float32 ``[1, C, T, h, w]`` (numpy), one
        object per window (call with ``num_returns=len(keys)``; a single array for one key)."""
        backend = self._stepped_backend()
        arrays = tuple(backend.latents(self._window(key).state).detach().to("cpu", copy=True).numpy() for key in keys)
        return arrays[0] if len(arrays) == 1 else arrays

    def windows_decode(self, keys: list[WindowKey]) -> tuple:
        """Decode each window from its final latents: ``(metas, frames_0, frames_1, ...)``, the
        frames one object per window in its work's ``wire_format``, as ``chunk`` returns them
        (call with ``num_returns=len(keys) + 1``). The safety check runs per window on the RGB
        frames, as in ``chunk``."""
        backend = self._stepped_backend()
        metas, frames_out = [], []
        for key in keys:
            window = self._window(key)
            tick = time.perf_counter()
            work = window.work
            wire_format = resolve_wire_format(work.wire_format)
            with torch.inference_mode():
                frames = backend.decode(window.state)
            finding = self._safety(frames, work.safety_mode) if work.safety_mode != "none" else None
            frames = frames_to_wire(frames, wire_format, self._device())
            window.seconds += time.perf_counter() - tick
            metas.append(
                ChunkMeta(
                    task_uuid=work.task_uuid,
                    result_index=work.result_index,
                    chunk_index=work.chunk.index,
                    seconds=window.seconds,
                    started_at=window.started_at,
                    worker_pid=os.getpid(),
                    num_frames=len(frames),
                    safety=finding,
                )
            )
            frames_out.append(frames)
        return (metas, *frames_out)

    def windows_drop(self, keys: list[WindowKey]) -> int:
        """Forget windows ``keys`` (those this worker holds); returns how many it dropped."""
        table = self._codenoise_windows()
        return sum(table.pop(key, None) is not None for key in keys)

    def windows_held(self) -> list[WindowKey]:
        """Keys of the windows this worker holds (tests check that a render leaves none)."""
        return sorted(self._codenoise_windows())

    def _window(self, key: WindowKey) -> _Window:
        window = self._codenoise_windows().get(key)
        if window is None:
            raise KeyError(f"this worker holds no window {key} (dropped, or begun on another worker)")
        return window

    @staticmethod
    def _checksums(backend: Any, window: _Window) -> tuple[str, ...]:
        from models.stepped import window_latents

        return shared_checksums(window_latents(backend, window.state), window.work.shared)

    def _predict_windows(self, keys: list[WindowKey], step: int) -> dict[WindowKey, np.ndarray]:
        backend = self._stepped_backend()
        slices = {}
        with torch.inference_mode():
            for key in keys:
                window = self._window(key)
                tick = time.perf_counter()
                window.prediction = backend.predict(window.state, step)
                if len(window.shared):
                    slices[key] = shared_slices(window.prediction, window.shared)
                window.seconds += time.perf_counter() - tick
        return slices

    def _report_windows(self, windows: list[_Window], step: int, total: int) -> None:
        """``step_callback``'s check for all windows of one call: report each window's step to the
        ``CancelFlags`` actor (progress) and raise ``TaskCancelledError`` once cancelled; at most
        every ``CANCEL_POLL_S`` except after the first and the last step."""
        token = windows[0].work.cancel_token if windows else None
        if token is None:
            return
        now = time.monotonic()
        if step and step + 1 < total and now - self.__dict__.get("_reported", 0.0) < CANCEL_POLL_S:
            return
        self._reported = now
        local = getattr(self, "_local_flags", None)
        if local is not None:
            cancelled = [local.report(token, w.work.result_index, w.work.chunk.index, step + 1, total) for w in windows]
        else:
            import ray

            if "_flags" not in self.__dict__:
                self._flags = cancel_flags()
            reports = [
                self._flags.report.remote(token, w.work.result_index, w.work.chunk.index, step + 1, total)
                for w in windows
            ]
            cancelled = ray.get(reports)
        if any(cancelled):
            raise TaskCancelledError(f"render {token} cancelled at step {step + 1}/{total}")


class AudioWorker:
    """Renders whole-clip audio with the profile's audio backend (wrapped by ``ray.remote``)."""

    def __init__(self, profile: ModelProfile, torch_threads: int | None = 1, *, flags: LocalCancelFlags | None = None):
        _set_threads(torch_threads)
        self._local_flags = flags
        if profile.audio_factory is None:
            raise ValueError(f"profile {profile.model_id!r} has no audio backend")
        started = time.perf_counter()
        self._backend = profile.audio_factory()
        self.load_seconds = time.perf_counter() - started

    def ready(self) -> float:
        """Seconds the backend took to load; returns once the actor is usable."""
        return self.load_seconds

    def use_local_flags(self, flags: LocalCancelFlags | None) -> None:
        """Ask ``flags`` after each denoising step from now on (see ``VideoWorker.use_local_flags``)."""
        self._local_flags = flags

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
            samples = self._backend.render(request, step_callback(work.cancel_token, local=self._local_flags))
        meta = AudioMeta(
            task_uuid=work.task_uuid,
            result_index=work.result_index,
            seconds=time.perf_counter() - started,
            started_at=started_at,
            sample_rate=self._backend.sample_rate,
        )
        return meta, np.asarray(samples, dtype=np.float32)


# -- frames on the wire (shared with the single-process reference, farm.render.codenoise) --------


def frames_to_wire(frames: Any, wire_format: WireFormat, device: Any = None) -> np.ndarray | Yuv420Frames:
    """A chunk's RGB frames (uint8 ``[n, H, W, 3]``, numpy or a torch tensor) as they leave a worker.

    ``"rgb"``: the frames as a numpy array. ``"yuv420p"``: ``Yuv420Frames``, converted where the
    frames are, or on ``device`` when it is a CUDA device (a backend that hands back host frames
    from a GPU model: the upload and the kernel cost far less than converting on the worker's one
    CPU): on CUDA the Triton kernel (``kernels.yuv.rgb_to_yuv420p``, within 1 level of swscale);
    on the CPU swscale itself (``farm.io.encode.rgb_to_yuv420p_planes``: exactly the encoder's
    conversion, and about 20x faster than the torch reference on one core).
    """
    if wire_format == "rgb":
        return frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    tensor = frames if isinstance(frames, torch.Tensor) else None
    if tensor is None and device is not None and torch.device(device).type == "cuda":
        tensor = torch.from_numpy(_writable(np.asarray(frames))).to(device)
    array = None if tensor is not None and tensor.is_cuda else np.asarray(frames if tensor is None else tensor.detach())
    if array is not None and array.ndim == 4 and not array.shape[1] % 2 and not array.shape[2] % 2:
        from farm.io.encode import rgb_to_yuv420p_planes

        y, u, v = rgb_to_yuv420p_planes(array, threads=1)
    else:  # CUDA frames, or odd sizes (rgb_to_yuv420p_planes takes even ones): the kernel
        from kernels.yuv import rgb_to_yuv420p

        source = tensor if tensor is not None else torch.from_numpy(_writable(np.asarray(frames)))
        y, u, v = (plane.cpu().numpy() for plane in rgb_to_yuv420p(source))
    return Yuv420Frames(y=y, u=u, v=v)


def frames_from_wire(frames: np.ndarray | Yuv420Frames, *, start: int = 0) -> np.ndarray:
    """uint8 RGB ``[n - start, H, W, 3]``: frames ``start:`` of frames as a worker returned them (a
    sequential chunk's tail). ``Yuv420Frames`` go back through ``kernels.yuv.yuv420p_to_rgb`` with
    bilinear chroma; RGB comes as it is."""
    if not isinstance(frames, Yuv420Frames):
        return frames[start:]
    from kernels.yuv import yuv420p_to_rgb

    y, u, v = (torch.from_numpy(_writable(p[start:])) for p in (frames.y, frames.u, frames.v))
    return yuv420p_to_rgb(y, u, v, chroma_upsample="bilinear").numpy()


def _writable(array: np.ndarray) -> np.ndarray:
    """``array``, or a copy when it is read-only (arrays from Ray's object store are)."""
    return array if array.flags.writeable else array.copy()


# -- co-denoising helpers (shared with the single-process reference, farm.render.codenoise) ------


@dataclass(eq=False, kw_only=True)
class _Window:
    """One co-denoised window held by a ``VideoWorker``: its backend state and its kept prediction."""

    work: WindowWork
    state: Any
    #: ``work.shared`` as an index tensor.
    shared: torch.Tensor
    #: The prediction of the step to take next (None once it is taken).
    prediction: torch.Tensor | None = None
    #: Model seconds spent on this window, and when it began (``time.time``).
    seconds: float = 0.0
    started_at: float = 0.0


def window_request(
    backend: Any,
    work: WindowWork,
    prompt: PromptEmbeds,
    conditioning: ClipConditioning | None = None,
    latents: np.ndarray | None = None,
) -> ChunkRequest:
    """The request of a co-denoised window: its slice of the result's global noise (or the given
    checkpoint ``latents``) and its share of the clip's conditioning, as ``chunk`` builds it."""
    chunk = work.chunk
    if latents is None:
        shape = backend.latent_frame_shape(work.height, work.width)
        start = latent_noise(work.seed, chunk.latent_start, chunk.latent_frames, shape)
    else:
        start = torch.from_numpy(np.array(latents, dtype=np.float32))  # a writable copy
    return ChunkRequest(
        chunk_index=chunk.index,
        prompt=prompt,
        latents=start,
        num_frames=chunk.num_frames,
        height=work.height,
        width=work.width,
        num_inference_steps=work.num_inference_steps,
        guidance_scale=work.guidance_scale,
        seed=work.seed,
        conditioning=conditioning.for_chunk(chunk) if conditioning is not None else None,
    )


def shared_slices(prediction: torch.Tensor, shared: torch.Tensor) -> np.ndarray:
    """The shared latent frames of a prediction: float32 ``[1, C, len(shared), h, w]`` on the CPU."""
    return prediction.index_select(2, shared.to(prediction.device)).to("cpu", torch.float32).numpy()


def write_fused(prediction: torch.Tensor, shared: torch.Tensor, fused: np.ndarray | None) -> None:
    """Write the fused values of the shared frames into ``prediction`` (in place)."""
    if fused is None:
        if len(shared):
            raise ValueError(f"no fused values for the {len(shared)} shared latent frames of a window")
        return
    if fused.shape[2] != len(shared):
        raise ValueError(f"fused values cover {fused.shape[2]} latent frames, the window shares {len(shared)}")
    prediction[:, :, shared.to(prediction.device)] = torch.from_numpy(np.asarray(fused)).to(
        prediction.device, prediction.dtype
    )


def shared_checksums(latents: torch.Tensor, shared: Sequence[int]) -> tuple[str, ...]:
    """A 128-bit digest of each ``shared`` latent frame of ``latents`` ``[1, C, T, h, w]``."""
    return tuple(
        hashlib.blake2b(latents[:, :, j].detach().to("cpu").contiguous().numpy().tobytes(), digest_size=16).hexdigest()
        for j in shared
    )


__all__ = ["AudioWorker", "VideoWorker", "frames_from_wire", "frames_to_wire"]
