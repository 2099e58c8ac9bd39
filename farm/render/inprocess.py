"""``InProcessExecutor``: the scheduler's decisions run by threads of this process, without Ray.

What a render on one machine needs, and nothing more: ``farm render`` without a cluster (its
``--executor in-process``, the default there) starts no Ray node, no worker processes and no
control actors, so a cold render costs what a plain diffusers script costs (imports, one model
build) and keeps what the farm adds on top (the blank conditioning encoded once, encoding while
the next chunk denoises, progress, cancel, every field of the task).

* A worker is a ``VideoWorker`` / ``AudioWorker`` object (the same classes the Ray actors wrap),
  built and called on a thread of its own: one unit at a time per worker, as an actor runs them.
  Model code releases the GIL in its kernels, so a chunk denoises while a finisher thread encodes.
* Cancel flags and step progress are one in-process ``CancelFlags`` handed to the workers.
* Media inputs are prepared in a thread; frames, embeddings and conditioning travel as plain
  objects (nothing is copied into an object store).
* Finishing is ``LocalFinishing``: one thread per result, with ``on_frames``.
* Co-denoising (``chunkMode: codenoise``) runs the same lockstep driver as on Ray, through
  ``InlineActor`` handles (``farm.workers.inline``) that queue each call on the worker's thread.

Workers cannot be lost (they live and die with this process), so nothing is re-rendered for that
reason.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from farm.domain.errors import RenderError
from farm.render.executor import (
    AudioDone,
    ChunkDone,
    FinishSpec,
    MediaConfig,
    Outcome,
    PoolSpec,
    PromptDone,
    ResultKey,
    StepReport,
    UnitFailed,
    WorkerFailed,
    WorkerReady,
)
from farm.workers.cancel import LocalCancelFlags
from farm.workers.messages import AudioWork, ChunkWork, CodenoiseWork, PromptWork

log = logging.getLogger(__name__)

#: How often ``poll`` reports the denoising steps in flight (as ``RayExecutor`` asks its actor).
PROGRESS_POLL_S = 0.5

#: Workers are built one at a time: building imports the model code (diffusers' lazy modules,
#: transformers), and Python imports racing in threads fail with "cannot import name".
_BUILD_LOCK = threading.Lock()


class _Worker:
    """One in-process worker: its object, built and called on its own thread."""

    def __init__(self, name: str):
        self.name = name
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.obj: Any = None


class InProcessExecutor:
    """The ``Executor`` (``farm.render.executor``) on threads of this process.

    ``resolver_for(media)`` builds the ``MediaResolver`` a task's inputs are fetched with;
    ``on_frames`` sees every final frame before the encoder (``LocalFinishing``).
    """

    def __init__(
        self,
        *,
        resolver_for: Callable[[MediaConfig], Any],
        on_frames: Callable | None = None,
        worker_classes: dict[str, type] | None = None,
    ):
        from farm.render.finisher import LocalFinishing

        self._ids = itertools.count(1)
        self._workers: dict[str, _Worker] = {}
        self._outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        #: What the workers ask after each denoising step (cancelled?) and report to (progress).
        self.flags = LocalCancelFlags()
        self._progress_at = 0.0
        self._resolver_for = resolver_for
        self._worker_classes = dict(worker_classes or {})
        self._finish = LocalFinishing(self._outcomes.put, on_frames=on_frames)

    # -- workers -------------------------------------------------------------------------------

    def start_worker(self, pool: PoolSpec) -> str:
        cls = self._worker_classes.get(pool.kind)
        if cls is None:
            from farm.workers.actors import AudioWorker, VideoWorker

            cls = VideoWorker if pool.kind == "video" else AudioWorker
        worker = _Worker(f"{pool.kind}-{next(self._ids)}")
        self._workers[worker.name] = worker

        def build() -> None:
            try:
                with _BUILD_LOCK:
                    worker.obj = cls(pool.profile, pool.torch_threads, flags=self.flags)
            except BaseException as error:  # noqa: BLE001 - reported as the worker's failure
                self._workers.pop(worker.name, None)
                self._outcomes.put(WorkerFailed(worker=worker.name, error=error))
                return
            self._outcomes.put(WorkerReady(worker=worker.name, load_seconds=worker.obj.load_seconds))

        worker.thread.submit(build)
        return worker.name

    def adopt(self, obj: Any, kind: str = "video") -> str:
        """Take a worker object built before (an ``InProcessPool`` 's, kept between tasks)."""
        worker = _Worker(f"{kind}-{next(self._ids)}")
        obj.use_local_flags(self.flags)  # this executor's cancels and progress, not the last one's
        worker.obj = obj
        self._workers[worker.name] = worker
        self._outcomes.put(WorkerReady(worker=worker.name, load_seconds=0.0))
        return worker.name

    def actor(self, worker: str) -> Any:
        """The worker object of ``worker`` (the pool keeps it for its next task)."""
        return self._workers[worker].obj

    def has(self, worker: str) -> bool:
        """Whether ``worker`` exists and has its model built."""
        known = self._workers.get(worker)
        return known is not None and known.obj is not None

    def stop_worker(self, worker: str) -> None:
        known = self._workers.pop(worker, None)
        if known is not None:
            known.thread.shutdown(wait=False, cancel_futures=True)

    # -- work ----------------------------------------------------------------------------------

    def prepare(self, task: Any, profile: Any, media: MediaConfig) -> None:
        from farm.render.prepare import prepare_in_thread

        prepare_in_thread(task, profile, self._resolver_for(media), self._outcomes.put)

    def encode_prompt(self, unit: Any, worker: str, work: PromptWork) -> None:
        def done(value: tuple[str | None, Any]) -> Outcome:
            extended, embeds = value
            return PromptDone(unit=unit, worker=worker, embeds=embeds, extended=extended)

        self._call(unit, worker, lambda obj: obj.prompt(work), done)

    def render_chunk(self, unit: Any, worker: str, work: ChunkWork, prompt: Any, conditioning: Any, tail: Any) -> None:
        def done(value: tuple[Any, Any]) -> Outcome:
            meta, frames = value
            return ChunkDone(unit=unit, worker=worker, meta=meta, frames=frames)

        self._call(unit, worker, lambda obj: obj.chunk(work, prompt, conditioning, tail), done)

    def render_audio(self, unit: Any, worker: str, work: AudioWork, conditioning: Any) -> None:
        def done(value: tuple[Any, Any]) -> Outcome:
            meta, audio = value
            return AudioDone(unit=unit, worker=worker, meta=meta, audio=audio)

        self._call(unit, worker, lambda obj: obj.audio(work, conditioning), done)

    def render_codenoise(
        self, unit: Any, workers: list[str], work: CodenoiseWork, prompt: Any, conditioning: Any
    ) -> None:
        """Co-denoise a result on the gang ``workers``: the lockstep driver (``farm.render.codenoise``)
        runs on a thread of its own and calls the workers through ``InlineActor`` handles, each
        call on the worker's thread; outcomes as ``RayExecutor.render_codenoise`` reports them."""
        from farm.render.codenoise import run_gang
        from farm.workers.inline import InlineActor, InlineRef

        actors = [InlineActor(self._workers[w].thread, self._workers[w].obj) for w in workers]

        def run() -> None:
            outcomes, lost = run_gang(actors, workers, unit, work, prompt, conditioning)
            for outcome in outcomes:
                if isinstance(outcome, ChunkDone) and isinstance(outcome.frames, InlineRef):
                    outcome = dataclasses.replace(outcome, frames=outcome.frames.get())  # decoded by then
                self._outcomes.put(outcome)
            for worker in lost:  # an in-process worker is not lost; reported as Ray's would be
                self._outcomes.put(WorkerFailed(worker=worker, error=RenderError(f"worker {worker} failed")))

        threading.Thread(target=run, name=f"codenoise-{work.task_uuid[:8]}-{work.result_index}", daemon=True).start()

    def _call(self, unit: Any, worker: str, run: Callable[[Any], Any], done: Callable[[Any], Outcome]) -> None:
        """Run ``run(worker object)`` on the worker's thread; ``done(value)`` or ``UnitFailed`` follows."""
        known = self._workers[worker]

        def call() -> None:
            try:
                value = run(known.obj)
            except BaseException as error:  # noqa: BLE001 - the unit's failure, the worker lives on
                self._outcomes.put(UnitFailed(unit=unit, worker=worker, error=error))
                return
            self._outcomes.put(done(value))

        known.thread.submit(call)

    # -- finishing -----------------------------------------------------------------------------

    def open_result(self, key: ResultKey, spec: FinishSpec) -> None:
        self._finish.open(key, spec)

    def add_chunk(self, key: ResultKey, chunk_index: int, frames: Any) -> None:
        self._finish.add_chunk(key, chunk_index, frames)

    def add_audio(self, key: ResultKey, audio: Any = None, *, carried: Any = None) -> None:
        self._finish.add_audio(key, audio, carried)

    def finish_result(self, key: ResultKey) -> None:
        self._finish.finish(key)

    def abort_result(self, key: ResultKey) -> None:
        self._finish.abort(key)

    # -- cancel and progress -------------------------------------------------------------------

    def cancel(self, token: str) -> None:
        self.flags.cancel(token)

    def forget_token(self, token: str) -> None:
        self.flags.clear(token)

    # -- outcomes ------------------------------------------------------------------------------

    def poll(self, timeout: float, tokens: Sequence[str] = ()) -> list[Outcome]:
        outcomes: list[Outcome] = []
        if tokens and time.monotonic() - self._progress_at >= PROGRESS_POLL_S:
            self._progress_at = time.monotonic()
            outcomes.append(StepReport(steps=self.flags.progress(list(tokens))))
        if not outcomes:
            try:
                outcomes.append(self._outcomes.get(timeout=timeout))
            except queue.Empty:
                return outcomes
        while True:
            try:
                outcomes.append(self._outcomes.get_nowait())
            except queue.Empty:
                return outcomes

    def release(self) -> None:
        """Stop finishing (open results are dropped) and this executor's threads, but leave the
        worker objects to their owner. Waits for what is queued on them (a co-denoising render's
        window drops; a cancelled unit, which stops at its next step), so the next task's executor
        gets them idle."""
        self._finish.shutdown()
        for worker in self._workers.values():
            worker.thread.shutdown(wait=True)

    def shutdown(self) -> None:
        for worker in list(self._workers):
            self.stop_worker(worker)
        self._finish.shutdown()


__all__ = ["InProcessExecutor"]
