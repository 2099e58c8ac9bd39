"""Render a task in this process: the scheduler core run by the caller, finishing in local threads.

``render_task`` is the Python API and what ``farm render`` uses: the same ``SchedulerCore`` the
cluster's control plane runs, with a ``RayExecutor`` that finishes results (stitch, resize, encode)
in threads of this process and can show every final frame to ``on_frames``. Workers come from a
``WorkerPool`` the caller keeps warm between tasks, or are started for the task and stopped after.
With an ``InProcessPool`` the workers are objects on threads of this process instead
(``farm.render.inprocess``: no Ray at all, what ``farm render`` uses on one machine).

Example::

    connect_ray()
    task = parse_task(json.load(open("examples/text-to-video-720p.json")))
    pool = WorkerPool(get_profile(task.model), WorkerConfig(video_workers=2))
    for result in render_task(task, pool, "out", on_event=print):
        print(result.path, result.seed, result.timings)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from farm.domain.constants import OUTPUT_FPS
from farm.domain.errors import RenderError, SafetyError, TaskCancelledError, WorkerLostError
from farm.domain.task import VideoInferenceTask
from farm.render.executor import MediaConfig
from farm.render.results import RenderEvent, RenderResult, ResultTimings, plan_task, result_seeds
from farm.scheduler.core import SchedulerConfig, SchedulerCore
from farm.scheduler.events import ResultOutcome, SchedulerEvent, TaskSpec
from farm.scheduler.pools import PoolPolicy

if TYPE_CHECKING:
    from farm.io.media import MediaResolver
    from farm.workers.pool import InProcessPool, WorkerPool

log = logging.getLogger(__name__)

EventCallback = Callable[[RenderEvent], None]
#: Called once per result as soon as its file is final, before ``render_task`` returns; an
#: exception in it is logged and does not fail the render.
ResultCallback = Callable[[RenderResult], None]
#: Sees every final frame of a result at the output size, in order, before the encoder does:
#: ``(result_index, first_frame_index, uint8 [n, height, width, 3])``; runs in the result's
#: finisher thread.
FramesCallback = Callable[[int, int, Any], None]
#: Polled between scheduler steps (about every 50 ms); True stops the render.
CancelCheck = Callable[[], bool]

__all__ = ["render_task", "plan_task", "result_seeds", "RenderEvent", "RenderResult", "ResultTimings"]


def render_task(
    task: VideoInferenceTask,
    pool: WorkerPool | InProcessPool,
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

    Files appear at ``out_dir/<taskUUID>-<i>.<ext>`` only once complete. On failure every partial
    file is removed and ``RenderError`` (or ``WorkerLostError``) is raised; bad media inputs, or
    inputs the profile cannot take, raise ``TaskValidationError`` naming the field before any
    chunk renders. A result refused by the safety checker comes back with ``error`` set and no
    file, while the others are rendered.

    ``should_cancel`` is polled while the render runs; once it returns True queued chunks are
    dropped, running ones stop at their next denoising step, partial files are removed and
    ``TaskCancelledError`` is raised once the workers are free again. ``results`` renders only
    those result indices (each keeps its seed ``base + index``); ``on_result`` is called as each
    result's file becomes final. ``resolver`` fetches the task's media inputs (``farm.io.media``);
    without one, URLs, data URIs and base64 still go through a default ``UrlGuard``.
    """
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wanted = tuple(range(task.number_results)) if results is None else tuple(sorted(set(results)))
    if any(not 0 <= i < task.number_results for i in wanted):
        raise ValueError(f"results {list(wanted)} out of range for numberResults {task.number_results}")
    core, executor = _local_core(pool, on_frames, resolver, blend)
    core.hand_over(
        TaskSpec(
            task_uuid=task.task_uuid,
            body={},
            api_key=None,
            seeds=tuple(result_seeds(task, base_seed)),
            results=wanted,
            out_dir=str(out),
            parsed=task,
            media=MediaConfig(),
        )
    )
    forward = _Forwarder(task, on_event, on_result, started)
    try:
        _run(core, task.task_uuid, forward, should_cancel)
    finally:
        _sync_pool(core, executor, pool)
        executor.release()
    _raise_failure(core, task.task_uuid, wanted)
    return [forward.rendered[i] for i in wanted]


def _run(core: SchedulerCore, task_uuid: str, forward: _Forwarder, should_cancel: CancelCheck | None) -> None:
    """Step the core until the task ends, forwarding its events and asking ``should_cancel``.

    Interrupted (Ctrl-C) or failing in a callback, it cancels the task first: running units stop at
    their next denoising step instead of finishing their chunk (on a GPU that can be a minute)."""
    cursor, cancelled = 0, False
    try:
        while True:
            if not cancelled and should_cancel is not None and should_cancel():
                cancelled = core.cancel(task_uuid)
            core.step(0.05)
            for event in core.events(cursor).events:
                cursor = event.seq
                forward(event)
            if core.ended(task_uuid) is not None:
                return
    except BaseException:
        core.cancel(task_uuid)
        raise


def _raise_failure(core: SchedulerCore, task_uuid: str, wanted: Sequence[int]) -> None:
    """Raise what the render ended with: cancelled, failed as a whole, or a result's own error
    (a safety refusal is not raised: that result comes back with ``error`` set)."""
    if core.ended(task_uuid) == "cancelled":
        raise TaskCancelledError(f"task {task_uuid} was cancelled")
    error, result_errors = core.errors(task_uuid)
    if error is not None:
        raise error
    for index in wanted:
        failure = result_errors.get(index)
        if failure is not None and not isinstance(failure, SafetyError):
            raise failure if isinstance(failure, RenderError | WorkerLostError) else RenderError(str(failure))


def _local_core(
    pool: WorkerPool | InProcessPool, on_frames: FramesCallback | None, resolver: MediaResolver | None, blend: str
) -> tuple[SchedulerCore, Any]:
    from farm.render.dispatch import RayExecutor

    def resolver_for(media: MediaConfig) -> Any:
        if resolver is not None:
            return resolver
        from farm.io.media import MediaResolver
        from farm.io.urlguard import UrlGuard

        return MediaResolver(guard=UrlGuard())

    from farm.workers.pool import InProcessPool

    profile = pool.profile
    if isinstance(pool, InProcessPool):
        from farm.render.inprocess import InProcessExecutor

        executor: Any = InProcessExecutor(resolver_for=resolver_for, on_frames=on_frames)
        count = pool.config.video_workers  # started as chunks wait, kept by the pool afterwards
    else:
        executor = RayExecutor(finishing="local", on_frames=on_frames, resolver_for=resolver_for)
        count = max(1, len(pool.video_workers))
    config = SchedulerConfig(
        default_pool=PoolPolicy(min_workers=0, max_workers=count),
        audio_pool=PoolPolicy(min_workers=0, max_workers=1),
        gpus_per_worker=pool.config.gpus_per_worker,
        cpus_per_worker=pool.config.cpus_per_worker,
        torch_threads=pool.config.torch_threads,
        max_replacements=pool.config.max_replacements,
        blend=blend,
        stats_interval_s=1e9,
    )
    core = SchedulerCore(executor, {profile.model_id: profile}, config)
    core.adopt("video", profile, [executor.adopt(actor, "video") for actor in pool.video_workers])
    if pool.audio_worker is not None:
        core.adopt("audio", profile, [executor.adopt(pool.audio_worker, "audio")])
    return core, executor


def _sync_pool(core: SchedulerCore, executor: Any, pool: WorkerPool | InProcessPool) -> None:
    """The pool keeps whatever workers are alive now (replacements included) for its next task."""
    profile = pool.profile
    name = f"video:{profile.model_id}"
    pool.replacements += core.stats()["pools"].get(name, {}).get("replacements", 0)
    pool.video_workers = [executor.actor(w) for w in core.workers(name) if executor.has(w)]
    audio = [executor.actor(w) for w in core.workers(f"audio:{profile.model_id}") if executor.has(w)]
    if audio:
        pool.audio_worker = audio[0]


class _Forwarder:
    """Scheduler events as the Python API's ``RenderEvent`` s, ``on_result`` calls and results."""

    def __init__(
        self, task: VideoInferenceTask, on_event: EventCallback | None, on_result: ResultCallback | None, started: float
    ):
        self.task, self.on_event, self.on_result, self.started = task, on_event, on_result, started
        self.rendered: dict[int, RenderResult] = {}

    def __call__(self, event: SchedulerEvent) -> None:
        if event.task_uuid != self.task.task_uuid or event.result_index is None:
            return
        if event.kind in ("chunk", "denoise", "audio", "encode") and self.on_event is not None:
            self.on_event(
                RenderEvent(
                    stage=event.kind,
                    result_index=event.result_index,
                    done=event.done,
                    total=event.total,
                    seconds=event.seconds,
                )
            )
        elif event.kind == "result" and event.outcome is not None and event.outcome.status != "cancelled":
            self._result(event.outcome)

    def _result(self, outcome: ResultOutcome) -> None:
        task = self.task
        result = RenderResult(
            index=outcome.index,
            seed=outcome.seed,
            video_uuid=outcome.video_uuid or "",
            path=Path(outcome.path) if outcome.path else None,
            output_format=task.output_format,
            num_frames=outcome.num_frames or task.num_frames,
            width=outcome.width or task.width,
            height=outcome.height or task.height,
            fps=OUTPUT_FPS,
            has_audio=outcome.has_audio,
            chunks=outcome.chunks,
            extended_prompt=outcome.extended_prompt,
            timings=ResultTimings(
                model_s=outcome.model_s,
                audio_s=outcome.audio_s,
                encode_s=outcome.encode_s,
                wall_s=time.perf_counter() - self.started,
                activity=outcome.activity,
            ),
        )
        if outcome.status == "error":
            if outcome.error_code != SafetyError.code:
                self.rendered[outcome.index] = result  # raised after the render (``_raise_failure``)
                return
            result = _with_error(result, SafetyError(outcome.error_message or "flagged by the safety checker"))
        self.rendered[outcome.index] = result
        if self.on_event is not None and outcome.status == "success":
            self.on_event(RenderEvent(stage="result", result_index=outcome.index, done=1, total=1))
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:  # the file is final; the caller's hook failing must not fail the render
                log.exception("on_result failed for result %d", outcome.index)


def _with_error(result: RenderResult, error: BaseException) -> RenderResult:
    import dataclasses

    return dataclasses.replace(result, error=error, path=None)  # type: ignore[arg-type]  # SafetyError is a FarmError
