"""``RayExecutor``: runs the scheduler's decisions on Ray actors and reports what happened.

* Workers are ``VideoWorker`` / ``AudioWorker`` actors (``farm.workers.actors``) with the pool's
  resources; a new worker is usable once its ``ready`` call returns (``WorkerReady``).
* A chunk is one actor call with two returns: small ``ChunkMeta`` (read here) and the frames
  (never read here: the reference goes to the finisher). A worker process that dies turns its
  unit into ``UnitFailed(worker_lost=True)``.
* Media inputs are prepared by a Ray task on CPU (``farm.render.prepare``), off the GPUs.
* Finishing (stitch, resize, encode, atomic file write) runs either in ``FinisherActor`` s on CPU
  (``finishing="actors"``: the gateway's farm, so no frame reaches the gateway process) or in
  threads of this process (``finishing="local"``: ``farm render``, which also gets ``on_frames``).

Every call returns at once; ``poll`` waits for whatever finishes next. Torch-free at import: the
actor classes are imported by the processes that run them.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from farm.domain.errors import TaskCancelledError, WorkerLostError
from farm.render.executor import (
    AudioDone,
    ChunkDone,
    Encoded,
    Finished,
    FinishSpec,
    MediaConfig,
    Outcome,
    PoolSpec,
    Prepared,
    PromptDone,
    ResultKey,
    StepReport,
    UnitFailed,
    WorkerFailed,
    WorkerReady,
)
from farm.render.prepare import with_conditioning
from farm.workers.cancel import cancel_flags
from farm.workers.messages import AudioWork, ChunkWork, CodenoiseWork, PromptWork

log = logging.getLogger(__name__)

#: How often the executor asks the ``CancelFlags`` actor for the denoising steps in flight.
PROGRESS_POLL_S = 0.5


def unwrap(error: BaseException) -> BaseException:
    """The error a remote call raised, without Ray's wrapper (``TaskCancelledError`` stays itself)."""
    if isinstance(error, RayTaskError):
        cause = error.cause
        if cause is not None:
            return cause
    return error


class RayExecutor:
    """The real ``Executor`` (``farm.render.executor``) on Ray actors.

    ``finishing`` chooses where results are stitched and encoded (see the module docstring; a
    callable ``(report, track) -> finishing`` supplies another, e.g. a simulation's no-op);
    ``finishers`` is how many ``FinisherActor`` s share the results (each takes one CPU).
    ``on_frames`` (local finishing only) sees every final frame before the encoder.
    ``resolver_for`` (local only) builds a task's ``MediaResolver`` in this process instead of
    preparing inputs in a Ray task (the Python API passes live resolvers).
    """

    def __init__(
        self,
        *,
        finishing: Literal["actors", "local"] | Callable = "actors",
        finishers: int = 1,
        finisher_cpus: float = 1.0,
        on_frames: Callable | None = None,
        resolver_for: Callable[[MediaConfig], Any] | None = None,
        worker_classes: dict[str, type] | None = None,
    ):
        self._ids = itertools.count(1)
        self._actors: dict[str, Any] = {}
        self._pids: dict[str, int] = {}
        #: ref -> (what, context)
        self._pending: dict[Any, tuple[str, Any]] = {}
        self._local: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._flags = cancel_flags()
        self._progress_ref: Any = None
        self._progress_asked = 0.0
        self._finishing = finishing
        self._resolver_for = resolver_for
        #: Actor classes per pool kind (simulations swap in workers that sleep a modelled time).
        self._worker_classes = dict(worker_classes or {})
        if not isinstance(finishing, str):
            self._finish: Any = finishing(self._local.put, self._track)
        elif finishing == "local":
            from farm.render.finisher import LocalFinishing

            self._finish: Any = LocalFinishing(self._local.put, on_frames=on_frames)
        else:
            from farm.render.finisher import ActorFinishing

            self._finish = ActorFinishing(self._track, count=finishers, cpus=finisher_cpus)

    # -- workers -------------------------------------------------------------------------------

    def start_worker(self, pool: PoolSpec) -> str:
        cls = self._worker_classes.get(pool.kind)
        if cls is None:
            from farm.workers.actors import AudioWorker, VideoWorker

            cls = VideoWorker if pool.kind == "video" else AudioWorker
        options: dict[str, Any] = {"num_cpus": pool.cpus, "num_gpus": pool.gpus}
        if pool.resources:
            options["resources"] = dict(pool.resources)
        actor = ray.remote(cls).options(**options).remote(pool.profile, pool.torch_threads)
        return self.adopt(actor, pool.kind)

    def adopt(self, actor: Any, kind: str = "video") -> str:
        """Take an actor started elsewhere (a ``WorkerPool``'s) as a worker; ``WorkerReady`` follows."""
        worker = f"{kind}-{next(self._ids)}"
        self._actors[worker] = actor
        self._pending[actor.ready.remote()] = ("ready", worker)
        return worker

    def actor(self, worker: str) -> Any:
        """The actor handle of ``worker`` (tests and the legacy pool)."""
        return self._actors[worker]

    def has(self, worker: str) -> bool:
        """Whether ``worker`` is alive as far as this executor knows."""
        return worker in self._actors

    def stop_worker(self, worker: str) -> None:
        actor = self._actors.pop(worker, None)
        if actor is not None:
            ray.kill(actor)

    # -- work ----------------------------------------------------------------------------------

    def prepare(self, task: Any, profile: Any, media: MediaConfig) -> None:
        from farm.render.prepare import prepare_in_thread, prepare_remote

        if self._resolver_for is not None:
            prepare_in_thread(task, profile, self._resolver_for(media), self._local.put, place=ray.put)
            return
        meta, conditioning = prepare_remote().remote(task, profile, media)
        self._pending[meta] = ("prepare", (task.task_uuid, conditioning))

    def encode_prompt(self, unit: Any, worker: str, work: PromptWork) -> None:
        actor = self._actors[worker]
        extended, embeds = actor.prompt.options(num_returns=2).remote(work)
        self._pending[extended] = ("prompt", (unit, worker, embeds))

    def render_chunk(self, unit: Any, worker: str, work: ChunkWork, prompt: Any, conditioning: Any, tail: Any) -> None:
        actor = self._actors[worker]
        meta, frames = actor.chunk.options(num_returns=2).remote(work, prompt, conditioning, tail)
        self._pending[meta] = ("chunk", (unit, worker, frames))

    def render_audio(self, unit: Any, worker: str, work: AudioWork, conditioning: Any) -> None:
        actor = self._actors[worker]
        meta, audio = actor.audio.options(num_returns=2).remote(work, conditioning)
        self._pending[meta] = ("audio", (unit, worker, audio))

    def render_codenoise(
        self, unit: Any, workers: list[str], work: CodenoiseWork, prompt: Any, conditioning: Any
    ) -> None:
        """Co-denoise a whole result (``chunkMode: codenoise``, ``farm.render.codenoise``) on the gang
        ``workers``, the lockstep driven from a thread of this process. What follows, in one batch:

        - success: one ``ChunkDone`` per window, in window order, each with ``unit``, the gang
          worker that decoded the window, ``meta.chunk_index`` = the window index and its frames
          reference (for ``add_chunk``); then one ``WorkerFailed`` per worker lost on the way
          (its windows moved to the others: the result did not fail);
        - failure: one ``UnitFailed`` for the gang (``worker``: a lost worker when
          ``worker_lost``, else ``workers[0]``; ``TaskCancelledError`` once cancelled), then one
          ``WorkerFailed`` per other lost worker.

        Every gang worker not reported lost is free again once that batch arrives.
        """
        from farm.render.codenoise import run_gang

        actors = [self._actors[worker] for worker in workers]

        def run() -> None:
            self._local_outcomes(*run_gang(actors, workers, unit, work, prompt, conditioning))

        threading.Thread(target=run, name=f"codenoise-{work.task_uuid[:8]}-{work.result_index}", daemon=True).start()

    def _local_outcomes(self, outcomes: list[Outcome], lost: list[str]) -> None:
        """Queue ``outcomes`` then a ``WorkerFailed`` for each of ``lost`` (forgotten here)."""
        for worker in lost:
            self._actors.pop(worker, None)
        for outcome in outcomes:
            self._local.put(outcome)
        for worker in lost:
            self._local.put(WorkerFailed(worker=worker, error=WorkerLostError(f"worker {worker} died co-denoising")))

    # -- finishing -----------------------------------------------------------------------------

    def _track(self, ref: Any, what: str, context: Any) -> None:
        self._pending[ref] = (what, context)

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
        self._flags.cancel.remote(token)

    def forget_token(self, token: str) -> None:
        self._flags.clear.remote(token)

    # -- outcomes ------------------------------------------------------------------------------

    def poll(self, timeout: float, tokens: Sequence[str] = ()) -> list[Outcome]:
        outcomes: list[Outcome] = []
        self._drain_local(outcomes)
        if tokens and self._progress_ref is None and time.monotonic() - self._progress_asked >= PROGRESS_POLL_S:
            self._progress_asked = time.monotonic()
            self._progress_ref = self._flags.progress.remote(list(tokens))
            self._pending[self._progress_ref] = ("progress", None)
        refs = list(self._pending)
        if refs:
            # Local outcomes (finisher threads) do not wake ray.wait: wait in short slices then.
            wait = 0 if outcomes else (min(timeout, 0.02) if self._finishing == "local" else timeout)
            ready, _ = ray.wait(refs, num_returns=1, timeout=wait)
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for ref in ready:
                what, context = self._pending.pop(ref)
                outcome = self._outcome(what, context, ref)
                if outcome is not None:
                    outcomes.append(outcome)
        elif not outcomes:
            try:
                outcomes.append(self._local.get(timeout=timeout))
            except queue.Empty:
                pass
        self._drain_local(outcomes)
        return outcomes

    def _drain_local(self, outcomes: list[Outcome]) -> None:
        while True:
            try:
                outcomes.append(self._local.get_nowait())
            except queue.Empty:
                return

    def _outcome(self, what: str, context: Any, ref: Any) -> Outcome | None:
        try:
            value = ray.get(ref, timeout=30)
        except (RayActorError, GetTimeoutError) as error:
            return self._failed(what, context, error, lost=True)
        except RayTaskError as error:
            return self._failed(what, context, unwrap(error), lost=False)
        except Exception as error:  # noqa: BLE001 - e.g. ObjectLostError: treated as a lost worker
            return self._failed(what, context, error, lost=True)
        if what == "ready":
            return WorkerReady(worker=context, load_seconds=float(value))
        if what == "prepare":
            task_uuid, conditioning = context
            return Prepared(task_uuid=task_uuid, inputs=with_conditioning(value, conditioning))
        if what == "prompt":
            unit, worker, embeds = context
            return PromptDone(unit=unit, worker=worker, embeds=embeds, extended=value)
        if what == "chunk":
            unit, worker, frames = context
            return ChunkDone(unit=unit, worker=worker, meta=value, frames=frames)
        if what == "audio":
            unit, worker, audio = context
            return AudioDone(unit=unit, worker=worker, meta=value, audio=audio)
        if what == "encoded":
            key = context
            return Encoded(task_uuid=key[0], result_index=key[1], frames_done=int(value))
        if what == "finished":
            key = context
            return Finished(task_uuid=key[0], result_index=key[1], file=value)
        if what == "progress":
            self._progress_ref = None
            return StepReport(steps=value)
        if what in ("quiet", "opened"):
            return None
        raise ValueError(f"unknown pending kind {what!r}")

    def _failed(self, what: str, context: Any, error: BaseException, *, lost: bool) -> Outcome | None:
        if what == "ready":
            self._actors.pop(context, None)
            return WorkerFailed(worker=context, error=error)
        if what == "prepare":
            return Prepared(task_uuid=context[0], error=error)
        if what in ("prompt", "chunk", "audio"):
            unit, worker = context[0], context[1]
            if lost:
                self._actors.pop(worker, None)
            if isinstance(error, TaskCancelledError):
                lost = False
            return UnitFailed(unit=unit, worker=worker, error=error, worker_lost=lost)
        if what in ("encoded", "finished", "opened"):
            key = context
            self._finish.forget(key)
            return Finished(task_uuid=key[0], result_index=key[1], error=error)
        if what == "progress":
            self._progress_ref = None
            return None
        log.debug("ignored failure of %s: %s", what, error)
        return None

    def release(self) -> None:
        """Stop finishing (open results are dropped) but leave the workers to their owner."""
        self._finish.shutdown()

    def shutdown(self) -> None:
        for worker in list(self._actors):
            self.stop_worker(worker)
        self._finish.shutdown()
