"""Render a validated task on a worker pool: plan, dispatch chunks, stitch, encode.

One render job per result (``numberResults``); all chunks of all results share the pool and go to
whichever video worker is free. The driver thread only dispatches and collects; each result has a
finisher thread that stitches its chunks in order, resizes the final frames to the output size and
streams them into the encoder, while the audio worker renders the result's audio concurrently.

If a video worker dies mid-chunk (``RayActorError``), the chunk goes back to the front of the queue
and the pool starts a replacement; the chunk's noise comes from the result seed, so the frames are
the same whichever worker renders it.

Before dispatching, the task's media inputs are resolved (``farm.io.media``) and placed on the render
grid (``farm.render.conditioning``); each ``ChunkWork`` carries its chunk's share. The prompt is extended
once on a video worker when the task and profile ask for it; with ``safety.checkContent`` each
worker checks its chunk's frames and a flagged result is dropped on its own (``SafetyError``).
Workers report their denoising steps through the ``CancelFlags`` actor, which is also how a
cancel reaches them.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import ray
import torch
from ray.exceptions import RayActorError

from farm.domain.constants import OUTPUT_FPS
from farm.domain.errors import (
    FarmError,
    RenderError,
    SafetyError,
    TaskCancelledError,
    TaskValidationError,
    Violation,
    WorkerLostError,
)
from farm.domain.planner import ClipPlan, plan_clip
from farm.domain.task import VideoInferenceTask
from farm.io.encode import ResultEncoder
from farm.render.conditioning import ClipConditioning, build_conditioning, extend_lead_frames, output_size
from farm.render.stitch import Stitcher
from farm.workers.actors import AudioOutput, ChunkOutput, ChunkWork, cancel_flags
from farm.workers.pool import WorkerPool
from kernels.resize import resize_frames
from models.base import AudioRequest, ModelProfile

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from farm.io.media import MediaResolver

Stage = Literal["chunk", "denoise", "audio", "encode", "result"]

_EXTENSIONS = {"MP4": "mp4", "WEBM": "webm", "MOV": "mov"}


@dataclass(frozen=True, kw_only=True)
class RenderEvent:
    """Progress of one result: ``done`` of ``total`` units of ``stage``.

    Stages: ``chunk`` (chunks rendered), ``denoise`` (denoising steps done over all of the result's
    chunks, finished ones included; about every ``_PROGRESS_POLL_S`` while chunks render),
    ``audio`` (0/1), ``encode`` (frames written to the container), ``result`` (1/1 once the file
    is final).
    """

    stage: Stage
    result_index: int
    done: int
    total: int
    #: For ``chunk``: the model seconds of the chunk just rendered (metrics); else 0.
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ResultTimings:
    """Where a result's time went, in seconds."""

    #: Sum of the model time of its chunks (over all workers).
    model_s: float
    #: Audio model time.
    audio_s: float
    #: Stitch, resize and encode time in the finisher thread.
    encode_s: float
    #: From the start of ``render_task`` to the file being final.
    wall_s: float
    #: Wall-clock (``time.time``) intervals in which a model or the encoder worked on this result.
    activity: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True, kw_only=True)
class RenderResult:
    """One delivered file of a task."""

    index: int
    seed: int
    video_uuid: str
    path: Path | None
    output_format: str
    num_frames: int
    width: int
    height: int
    fps: int
    has_audio: bool
    chunks: int
    timings: ResultTimings
    #: The prompt the model rendered when ``settings.promptExtend`` extended it, else None.
    extended_prompt: str | None = None
    #: Set when this result failed on its own (e.g. ``SafetyError``) while the others went on;
    #: ``path`` is then None and nothing may be delivered.
    error: FarmError | None = None


EventCallback = Callable[[RenderEvent], None]
#: Called once per result as soon as its file is final (in that result's finisher thread), before
#: ``render_task`` returns; an exception in it is logged and does not fail the render.
ResultCallback = Callable[["RenderResult"], None]
#: Sees every final frame of a result at the output size, in order, before the encoder does:
#: ``(result_index, first_frame_index, uint8 [n, height, width, 3])``. For safety checks and
#: previews; it runs in the result's finisher thread.
FramesCallback = Callable[[int, int, torch.Tensor], None]
#: Polled by the driver (about every ``_CANCEL_POLL_S``); True stops the render.
CancelCheck = Callable[[], bool]

#: How often the driver polls ``should_cancel`` while chunks render.
_CANCEL_POLL_S = 0.1
#: How often the driver asks for the denoising steps of the chunks in flight.
_PROGRESS_POLL_S = 0.5
#: How long a cancelled render waits for its in-flight chunks to stop (they stop within one step).
_CANCEL_DRAIN_S = 30.0


def result_seeds(task: VideoInferenceTask, base_seed: int | None = None) -> list[int]:
    """Seeds of the task's results: ``base + i``; the base is the task's ``seed``, else random."""
    base = base_seed if base_seed is not None else task.seed
    if base is None:
        base = secrets.randbelow(2**31)
    return [base + i for i in range(task.number_results)]


def plan_task(
    task: VideoInferenceTask, profile: ModelProfile, blend: Literal["linear", "cosine"] = "cosine", lead_frames: int = 0
) -> ClipPlan:
    """The chunk plan of each of ``task``'s results on ``profile`` (``lead_frames``: an extended
    video's tail, rendered in front of the delivered frames and dropped after stitching)."""
    return plan_clip(
        task.num_frames + lead_frames,
        window_frames=profile.window_frames,
        overlap_frames=profile.overlap_frames,
        temporal_stride=profile.temporal_stride,
        blend=blend,
    )


class _Finisher(threading.Thread):
    """Stitches one result's chunks in order, resizes and encodes them, in its own thread."""

    _END = object()

    def __init__(
        self,
        *,
        index: int,
        plan: ClipPlan,
        encoder: ResultEncoder,
        width: int,
        height: int,
        emit: EventCallback,
        on_frames: FramesCallback | None,
        on_done: Callable[[_Finisher], None] | None = None,
        lead_frames: int = 0,
    ):
        super().__init__(name=f"finisher-{index}", daemon=True)
        self._on_done = on_done
        self._lead = lead_frames
        self.index = index
        self._plan = plan
        self._encoder = encoder
        self._stitcher = Stitcher(plan)
        self._size = (width, height)
        self._emit = emit
        self._on_frames = on_frames
        self._inbox: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.encode_seconds = 0.0
        self.activity: list[tuple[float, float]] = []
        self.path: Path | None = None

    def add_chunk(self, output: ChunkOutput) -> None:
        self._inbox.put(("chunk", output))

    def add_audio(self, output: AudioOutput) -> None:
        self._inbox.put(("audio", output))

    def finish(self) -> None:
        self._inbox.put((self._END, None))

    def abort(self) -> None:
        self._inbox.put(("abort", None))

    def run(self) -> None:
        try:
            while True:
                kind, item = self._inbox.get()
                started, started_at = time.perf_counter(), time.time()
                if kind is self._END:
                    self.path = Path(self._encoder.close())
                    self.encode_seconds += time.perf_counter() - started
                    self.activity.append((started_at, time.time()))
                    if self._on_done is not None:
                        try:
                            self._on_done(self)
                        except Exception:  # the file is final; the caller logs its own failure
                            log.exception("on_result failed for result %d", self.index)
                    return
                if kind == "abort":
                    self._encoder.abort()
                    return
                if kind == "audio":
                    self._encoder.set_audio(item.samples, item.sample_rate)
                elif kind == "chunk":
                    first = self._stitcher.frames_emitted
                    final = self._stitcher.add(item.chunk_index, item.frames)
                    if final is not None and first < self._lead:  # an extended video's own tail
                        drop = min(self._lead - first, len(final))
                        final, first = final[drop:], first + drop
                    if final is not None and len(final):
                        width, height = self._size
                        frames = resize_frames(final, width, height)
                        if self._on_frames is not None:
                            self._on_frames(self.index, first - self._lead, frames)
                        self._encoder.write_frames(frames)
                        self._emit(
                            RenderEvent(
                                stage="encode",
                                result_index=self.index,
                                done=self._stitcher.frames_emitted - self._lead,
                                total=self._plan.num_frames - self._lead,
                            )
                        )
                self.encode_seconds += time.perf_counter() - started
                self.activity.append((started_at, time.time()))
        except BaseException as exc:  # noqa: BLE001 - reported to the driver, file removed
            self.error = exc
            self._encoder.abort()


@dataclass
class _ResultState:
    index: int
    seed: int
    plan: ClipPlan
    finisher: _Finisher
    chunks_done: int = 0
    model_seconds: float = 0.0
    audio_seconds: float = 0.0
    wants_audio: bool = False
    #: Generated or carried from a reference video.
    has_audio: bool = False
    model_activity: list[tuple[float, float]] = field(default_factory=list)
    video_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    extended_prompt: str | None = None
    #: Set when this result was refused on its own (safety); its file is removed.
    error: FarmError | None = None


def render_task(
    task: VideoInferenceTask,
    pool: WorkerPool,
    out_dir: str | Path,
    *,
    base_seed: int | None = None,
    on_event: EventCallback | None = None,
    on_frames: FramesCallback | None = None,
    blend: Literal["linear", "cosine"] = "cosine",
    should_cancel: CancelCheck | None = None,
    results: Sequence[int] | None = None,
    on_result: ResultCallback | None = None,
    resolver: MediaResolver | None = None,
) -> list[RenderResult]:
    """Render every result of ``task`` on ``pool`` into ``out_dir``; returns them in order.

    Files appear at ``out_dir/<taskUUID>-<i>.<ext>`` only once complete. On failure every
    partial file is removed and ``RenderError`` (or ``WorkerLostError``) is raised; bad media
    inputs, or inputs the profile cannot take, raise ``TaskValidationError`` naming the field before
    any work starts. A result refused by the safety checker comes back with ``error`` set and no
    file, while the others are rendered.

    ``should_cancel`` is polled while the render runs; once it returns True the driver stops
    dispatching, the workers stop their chunks at the next denoising step (see
    ``farm.workers.actors.CancelFlags``), partial files are removed and ``TaskCancelledError`` is raised
    after the workers are free again.

    ``results`` renders only those result indices (a resumed task skips the results it already
    delivered); each keeps its seed ``base + index``. ``on_result`` is called as each result's
    file becomes final. ``resolver`` fetches the task's media inputs (``farm.io.media``); without one,
    inputs given as URLs, data URIs or base64 are still fetched through a default ``UrlGuard``.
    """
    started = time.perf_counter()
    profile = pool.profile
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = _resolve(task, resolver)
    width, height = output_size(task.width, task.height, task.resolution, inputs)
    if (width, height) != (task.width, task.height):  # the preset follows the input's aspect ratio
        task = dataclasses.replace(task, width=width, height=height)
    native_w, native_h = profile.native_size(task.width, task.height)
    conditioning = build_conditioning(
        inputs,
        num_frames=task.num_frames,
        native_width=native_w,
        native_height=native_h,
        extend_frames=extend_lead_frames(profile),
    )
    sequential = (task.settings.chunk_mode or profile.extra.get("chunk_mode", "parallel")) == "sequential"
    if not conditioning.empty or sequential:
        _require_conditioning(pool, task, sequential)
    if _safety_mode(task) != "none" and profile.safety_factory is None:
        raise TaskValidationError(
            [Violation(field="safety.checkContent", message=f"model {task.model} has no safety checker configured")],
            task_uuid=task.task_uuid,
        )
    lock = threading.Lock()

    def emit(event: RenderEvent) -> None:
        if on_event is not None:
            with lock:
                on_event(event)

    carried = conditioning.carried_audio
    wants_audio = task.settings.audio and pool.audio_worker is not None and carried is None
    has_audio = wants_audio or carried is not None
    if task.settings.audio and pool.audio_worker is None and carried is None:
        raise RenderError(f"profile {profile.model_id!r} has no audio backend but settings.audio is true")

    # The same cut for every result; only seeds differ.
    plan = plan_task(task, profile, blend, lead_frames=conditioning.lead_frames)
    seeds = result_seeds(task, base_seed)
    wanted = range(task.number_results) if results is None else sorted(set(results))
    if any(not 0 <= i < task.number_results for i in wanted):
        raise ValueError(f"results {list(wanted)} out of range for numberResults {task.number_results}")

    def build(finisher: _Finisher) -> RenderResult:
        return _result_of(task, states[finisher.index], started)

    def done(finisher: _Finisher) -> None:
        if on_result is not None:
            on_result(build(finisher))

    states: dict[int, _ResultState] = {}
    for index in wanted:
        seed = seeds[index]
        path = out_dir / f"{task.task_uuid}-{index}.{_EXTENSIONS[task.output_format]}"
        encoder = ResultEncoder(
            path,
            output_format=task.output_format,
            quality=task.output_quality,
            width=task.width,
            height=task.height,
            fps=OUTPUT_FPS,
            audio=has_audio,
            # A carried track keeps its channels; the encoder downmixes or duplicates to stereo.
            audio_channels=carried[0].shape[0] if carried is not None else 2,
            expected_frames=task.num_frames,
        )
        finisher = _Finisher(
            index=index,
            plan=plan,
            encoder=encoder,
            width=task.width,
            height=task.height,
            emit=emit,
            on_frames=on_frames,
            on_done=done,
            lead_frames=conditioning.lead_frames,
        )
        states[index] = _ResultState(
            index=index, seed=seed, plan=plan, finisher=finisher, wants_audio=wants_audio, has_audio=has_audio
        )
        if carried is not None:
            finisher.add_audio(
                AudioOutput(
                    result_index=index, samples=carried[0], sample_rate=carried[1], seconds=0.0, started_at=time.time()
                )
            )
    for state in states.values():
        state.finisher.start()

    try:
        _run(task, pool, states, emit, native_w, native_h, should_cancel, conditioning, sequential)
    except BaseException as exc:
        for state in states.values():
            state.finisher.abort()
        for state in states.values():
            state.finisher.join()
        if isinstance(exc, FarmError):
            raise
        raise RenderError(f"render of task {task.task_uuid} failed: {exc}") from exc

    rendered = []
    for state in states.values():
        state.finisher.join()
        if state.error is not None:  # refused on its own: no file, the others go on
            failed = dataclasses.replace(build(state.finisher), path=None, error=state.error)
            if on_result is not None:
                try:
                    on_result(failed)
                except Exception:  # as for finished results
                    log.exception("on_result failed for result %d", state.index)
            rendered.append(failed)
            continue
        if state.finisher.error is not None:
            for other in states.values():
                other.finisher.abort()
            raise RenderError(
                f"result {state.index} of task {task.task_uuid} failed while encoding: {state.finisher.error}"
            ) from state.finisher.error
        emit(RenderEvent(stage="result", result_index=state.index, done=1, total=1))
        rendered.append(build(state.finisher))
    return rendered


def _result_of(task: VideoInferenceTask, state: _ResultState, started: float) -> RenderResult:
    """The ``RenderResult`` of a result whose file is final."""
    return RenderResult(
        index=state.index,
        seed=state.seed,
        video_uuid=state.video_uuid,
        path=state.finisher.path,
        output_format=task.output_format,
        num_frames=task.num_frames,
        width=task.width,
        height=task.height,
        fps=OUTPUT_FPS,
        has_audio=state.has_audio,
        chunks=len(state.plan.chunks),
        timings=ResultTimings(
            model_s=state.model_seconds,
            audio_s=state.audio_seconds,
            encode_s=state.finisher.encode_seconds,
            wall_s=time.perf_counter() - started,
            activity=tuple(sorted(state.model_activity + state.finisher.activity)),
        ),
        extended_prompt=state.extended_prompt,
    )


def _safety_mode(task: VideoInferenceTask) -> str:
    """``none``, ``fast`` or ``full``: ``checkContent`` is the switch; with it on, mode ``none``
    (the seed's default) checks key frames."""
    if not task.safety.check_content:
        return "none"
    return "fast" if task.safety.mode == "none" else task.safety.mode


def _has_inputs(task: VideoInferenceTask) -> bool:
    inputs = task.inputs
    return bool(inputs.frame_images or inputs.reference_images or inputs.reference_videos or inputs.mask)


def _resolve(task: VideoInferenceTask, resolver: MediaResolver | None):
    """The task's decoded media inputs (``TaskValidationError`` naming each bad field), or None."""
    if not _has_inputs(task):
        return None
    from farm.io.media import MediaResolver, resolve_inputs
    from farm.io.urlguard import UrlGuard

    return resolve_inputs(task, resolver or MediaResolver(guard=UrlGuard()))


def _require_conditioning(pool: WorkerPool, task: VideoInferenceTask, sequential: bool) -> None:
    """Refuse inputs (or sequential chunks) a text-only backend would silently ignore."""
    worker = pool.video_workers[0] if pool.video_workers else None
    if worker is not None and ray.get(worker.supports_conditioning.remote()):
        return
    inputs = task.inputs
    field = (
        "inputs.frameImages"
        if inputs.frame_images
        else "inputs.referenceImages"
        if inputs.reference_images
        else "inputs.referenceVideos"
        if inputs.reference_videos
        else "settings.chunkMode"
    )
    what = "sequential chunks" if field == "settings.chunkMode" else "media inputs"
    raise TaskValidationError(
        [
            Violation(
                field=field,
                message=f"model {task.model} renders text-to-video only and cannot take {what}; "
                "use a profile with a conditioning pipeline (WanVACEPipeline)",
            )
        ],
        task_uuid=task.task_uuid,
    )


def _on_any_worker(pool: WorkerPool, call: Callable, what: str):
    """``ray.get(call(worker))`` on the first live video worker, replacing workers that die."""
    while True:
        if not pool.video_workers:
            raise WorkerLostError(f"every video worker died before {what}")
        worker = pool.video_workers[0]
        try:
            return ray.get(call(worker))
        except RayActorError:
            if pool.replace(worker) is None and not pool.video_workers:
                raise WorkerLostError(f"every video worker died before {what}") from None


def _encode_prompt(pool: WorkerPool, prompt: str, extend_seed: int | None = None) -> tuple[object, str | None]:
    """The prompt embeddings, put once into the object store, and the extended prompt.

    With ``extend_seed`` the profile's prompt extender (on a video worker: the LLM lives where the
    GPUs are) rewrites ``prompt`` first and the extension is what the model renders; None when the
    prompt was not extended.
    """
    extended = None
    if extend_seed is not None:
        extended = _on_any_worker(
            pool, lambda w: w.extend_prompt.remote(prompt, extend_seed), "the prompt was extended"
        )
    embeds = _on_any_worker(pool, lambda w: w.encode_prompt.remote(extended or prompt, None), "the prompt was encoded")
    return ray.put(embeds), extended


class _StepProgress:
    """Denoising steps per result, from what the workers report to the ``CancelFlags`` actor."""

    def __init__(self, flags, token: str, states: dict[int, _ResultState], steps_per_chunk: int):
        self._flags, self._token, self._states = flags, token, states
        self._steps = steps_per_chunk
        self._pending: ray.ObjectRef | None = None
        self._asked = 0.0
        self._finished: set[tuple[int, int]] = set()
        self._reported: dict[tuple[int, int], int] = {}
        self._emitted: dict[int, int] = {}

    def chunk_done(self, result_index: int, chunk_index: int) -> None:
        self._finished.add((result_index, chunk_index))

    def poll(self, emit: EventCallback) -> None:
        """Ask (at most every ``_PROGRESS_POLL_S``) without blocking; emit ``denoise`` events on change."""
        if self._pending is not None:
            ready, _ = ray.wait([self._pending], timeout=0)
            if not ready:
                return
            try:
                self._reported = {key: step for key, (step, _) in ray.get(self._pending).items()}
            except ray.exceptions.RayError:  # progress is best effort
                pass
            self._pending = None
            self._emit(emit)
        if time.monotonic() - self._asked >= _PROGRESS_POLL_S:
            self._asked = time.monotonic()
            self._pending = self._flags.progress.remote(self._token)

    def _emit(self, emit: EventCallback) -> None:
        for index, state in self._states.items():
            if state.error is not None:
                continue
            total = len(state.plan.chunks) * self._steps
            done = sum(
                self._steps
                if (index, c.index) in self._finished
                else min(self._steps, self._reported.get((index, c.index), 0))
                for c in state.plan.chunks
            )
            if done != self._emitted.get(index):
                self._emitted[index] = done
                emit(RenderEvent(stage="denoise", result_index=index, done=done, total=total))


def _cancel(task: VideoInferenceTask, flags, token: str | None, in_flight) -> None:
    """Stop the in-flight chunks (and audio) of a cancelled render and wait until their workers are free."""
    if token is not None and in_flight:
        ray.get(flags.cancel.remote(token))
        # Each worker notices within one denoising step; waiting here means the pool is free for
        # the next task when this one reports cancelled.
        ray.wait(list(in_flight), num_returns=len(in_flight), timeout=_CANCEL_DRAIN_S)
        flags.clear.remote(token)
    raise TaskCancelledError(f"task {task.task_uuid} was cancelled")


def _run(
    task: VideoInferenceTask,
    pool: WorkerPool,
    states: dict[int, _ResultState],
    emit: EventCallback,
    native_w: int,
    native_h: int,
    should_cancel: CancelCheck | None = None,
    conditioning: ClipConditioning | None = None,
    sequential: bool = False,
) -> None:
    # A fresh token per render (a resumed or repeated render is never cancelled by an old flag);
    # the workers also report their denoising steps under it.
    token = f"{task.task_uuid}/{uuid.uuid4()}"
    flags = cancel_flags()
    try:
        _dispatch(task, pool, states, emit, native_w, native_h, should_cancel, conditioning, sequential, token, flags)
    finally:
        flags.clear.remote(token)


def _dispatch(
    task: VideoInferenceTask,
    pool: WorkerPool,
    states: dict[int, _ResultState],
    emit: EventCallback,
    native_w: int,
    native_h: int,
    should_cancel: CancelCheck | None,
    conditioning: ClipConditioning | None,
    sequential: bool,
    token: str,
    flags,
) -> None:
    profile = pool.profile
    if should_cancel is not None and should_cancel():
        _cancel(task, flags, token, {})
    if any(s.finisher.error for s in states.values()):
        raise RenderError(str(next(s.finisher.error for s in states.values() if s.finisher.error)))

    audio_pending: dict[ray.ObjectRef, tuple[int, AudioRequest]] = {}

    def start_audio(index: int, request: AudioRequest) -> None:
        audio_pending[pool.audio_worker.render.remote(index, request, token, flags)] = (index, request)

    conditioning = conditioning or ClipConditioning()
    voice, voice_rate = conditioning.voice if conditioning.voice is not None else (None, 0)

    for state in states.values():
        if state.wants_audio:
            start_audio(
                state.index,
                AudioRequest(
                    prompt=task.positive_prompt,
                    duration_s=task.num_frames / OUTPUT_FPS,
                    seed=state.seed,
                    num_inference_steps=profile.audio_steps,
                    voice=voice,
                    voice_rate=voice_rate,
                ),
            )

    extend_seed = None
    if task.settings.prompt_extend and profile.prompt_extender_factory is not None:
        extend_seed = min(s.seed for s in states.values())
    prompt_ref, extended = _encode_prompt(pool, task.positive_prompt, extend_seed)
    for state in states.values():
        state.extended_prompt = extended
    safety_mode = _safety_mode(task)

    def make_work(state: _ResultState, chunk, extra_frames=None) -> ChunkWork:
        return ChunkWork(
            result_index=state.index,
            chunk=chunk,
            seed=state.seed,
            width=native_w,
            height=native_h,
            num_inference_steps=profile.num_inference_steps,
            guidance_scale=profile.guidance_scale,
            cancel_token=token,
            cancel_flags=flags,
            conditioning=conditioning.for_chunk(chunk, extra_frames),
            safety_mode=safety_mode,
        )

    # Result-major order: the first result is finished (and deliverable) as early as possible.
    # Sequential: only each result's first chunk now; chunk k+1 once chunk k's frames are back.
    todo = collections.deque(
        make_work(state, chunk)
        for state in states.values()
        for chunk in (state.plan.chunks[:1] if sequential else state.plan.chunks)
    )
    idle = list(pool.video_workers)
    in_flight: dict[ray.ObjectRef, tuple[object, ChunkWork]] = {}
    steps = _StepProgress(flags, token, states, profile.num_inference_steps)

    while todo or in_flight or audio_pending:
        if should_cancel is not None and should_cancel():
            _cancel(task, flags, token, [*in_flight, *audio_pending])
        while idle and todo:
            worker = idle.pop(0)
            work = todo.popleft()
            in_flight[worker.render_chunk.remote(work, prompt_ref)] = (worker, work)
        if not in_flight and todo:
            raise WorkerLostError(
                f"no video worker left for {len(todo)} chunk(s) of task {task.task_uuid} "
                f"after {pool.replacements} replacement(s)"
            )
        steps.poll(emit)
        ready, _ = ray.wait([*in_flight, *audio_pending], num_returns=1, timeout=_CANCEL_POLL_S)
        if not ready:
            continue
        ref = ready[0]
        if ref in audio_pending:
            index, request = audio_pending.pop(ref)
            try:
                output: AudioOutput = ray.get(ref)
            except RayActorError:
                if pool.replace_audio() is None:
                    raise WorkerLostError(f"the audio worker died for task {task.task_uuid}") from None
                start_audio(index, request)
                continue
            if states[index].error is not None:
                continue
            states[index].audio_seconds = output.seconds
            states[index].model_activity.append((output.started_at, output.started_at + output.seconds))
            states[index].finisher.add_audio(output)
            emit(RenderEvent(stage="audio", result_index=index, done=1, total=1))
            continue

        worker, work = in_flight.pop(ref)
        try:
            chunk: ChunkOutput = ray.get(ref)
        except RayActorError:
            todo.appendleft(work)  # same chunk, same noise: another worker renders identical frames
            fresh = pool.replace(worker)
            if fresh is not None:
                idle.append(fresh)
            continue
        idle.append(worker)
        state = states[chunk.result_index]
        if state.error is not None:
            continue  # a chunk still in flight when its result was refused
        verdict = chunk.safety
        if verdict is not None and verdict.flagged:
            start = state.plan.chunks[chunk.chunk_index].start
            frame = max(0, start + (verdict.frame or 0) - conditioning.lead_frames)
            state.error = SafetyError(
                f"result {state.index} was flagged by the safety checker: {verdict.concept} "
                f"(score {verdict.score:.2f}) near frame {frame}; nothing is delivered"
            )
            state.finisher.abort()
            todo = collections.deque(w for w in todo if w.result_index != state.index)
            emit(
                RenderEvent(
                    stage="chunk",
                    result_index=state.index,
                    done=len(state.plan.chunks),
                    total=len(state.plan.chunks),
                    seconds=chunk.seconds,
                )
            )
            continue
        state.chunks_done += 1
        state.model_seconds += chunk.seconds
        state.model_activity.append((chunk.started_at, chunk.started_at + chunk.seconds))
        state.finisher.add_chunk(chunk)
        steps.chunk_done(chunk.result_index, chunk.chunk_index)
        if sequential and chunk.chunk_index + 1 < len(state.plan.chunks):
            done_plan, next_plan = state.plan.chunks[chunk.chunk_index], state.plan.chunks[chunk.chunk_index + 1]
            tail = {g: chunk.frames[g - done_plan.start] for g in range(next_plan.start, done_plan.end)}
            todo.appendleft(make_work(state, next_plan, tail))
        emit(
            RenderEvent(
                stage="chunk",
                result_index=chunk.result_index,
                done=state.chunks_done,
                total=len(state.plan.chunks),
                seconds=chunk.seconds,
            )
        )
        failed = next((s for s in states.values() if s.finisher.error is not None), None)
        if failed is not None:
            raise RenderError(f"result {failed.index} failed while encoding: {failed.finisher.error}")

    for state in states.values():
        if state.error is None:
            state.finisher.finish()
