"""The task manager: admission, a fair queue, one runner thread, cancellation, restart and watch.

``TaskManager`` implements ``farm.domain.records.TaskService`` for both gateway faces. Every task is
persisted in the ``TaskStore`` before it is acknowledged, so a restart resumes whatever was queued
or running. One runner thread renders one task at a time on a warm ``WorkerPool`` per model (all
the workers of the pool serve that task's chunks); the next task is chosen round-robin over the
API keys that have queued tasks, oldest first within a key, so one busy client cannot starve the
others.

Threads: gateway handlers call ``submit``/``get``/``cancel`` from any thread; the runner thread
renders and publishes ``ProgressEvent``s; ``watch`` subscribers live in asyncio event loops and
receive events through ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from farm.domain.errors import (
    DuplicateTaskError,
    QueueFullError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskValidationError,
    error_info,
)
from farm.domain.records import ProgressEvent, ResultRecord, TaskRecord
from farm.domain.task import VideoInferenceTask
from farm.domain.validation import parse_task
from farm.io.media import MediaResolver
from farm.io.urlguard import UrlGuard
from farm.render.driver import RenderEvent, RenderResult, render_task, result_seeds
from farm.scheduler.store import TaskStore
from farm.workers.pool import WorkerPool
from models.base import ModelProfile
from models.profiles import get_profile

log = logging.getLogger(__name__)

PoolFactory = Callable[[ModelProfile], WorkerPool]
#: Called from the runner thread for each successful result: ``(record, task)``. It may return an
#: updated ``ResultRecord`` (URL, upload/webhook outcome), which is stored; exceptions are logged.
ResultCallback = Callable[[ResultRecord, VideoInferenceTask], "ResultRecord | None"]
#: Renders a task; ``farm.render.driver.render_task`` or a fake with the same signature in unit tests.
RenderFunction = Callable[..., list[RenderResult]]

_TERMINAL = ("done", "error", "cancelled")
_FINISHED = ("success", "error", "cancelled")
_CONTENT_TYPES = {"MP4": "video/mp4", "WEBM": "video/webm", "MOV": "video/quicktime"}
#: Progress is written to SQLite at most this often per result (events still stream every change).
_PROGRESS_WRITE_S = 0.5
#: Retry-After when no task has finished yet to estimate from.
_DEFAULT_RETRY_AFTER_S = 5.0


def canonical_body(raw: dict) -> str:
    """The task JSON as stored and compared for duplicates: sorted keys, no whitespace."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


_ABSENT = object()


class _Lane:
    """One API key's queued tasks, oldest first, with each task's sequence number in the lane.

    Sequence numbers are contiguous from ``head`` (the first task's), so a task's index in the lane
    is ``seq[task] - head`` in O(1); removing a task from the middle renumbers the lane.
    """

    __slots__ = ("tasks", "seq", "head")

    def __init__(self):
        self.tasks: collections.deque[str] = collections.deque()
        self.seq: dict[str, int] = {}
        self.head = 0

    def index(self, task_uuid: str) -> int:
        return self.seq[task_uuid] - self.head


class _FairQueue:
    """Queued task UUIDs per API key, served round-robin over keys, oldest first within a key.

    ``push``, ``pop``, ``len`` and ``key_of`` are O(1); ``position`` is O(number of keys with
    queued tasks), not O(queue length), so Submit and GetResponse never walk the queue;
    ``remove`` (cancel) is O(length of that key's lane).
    """

    def __init__(self):
        # Lanes in rotation order: ``pop`` serves the first lane and moves it to the back.
        self._lanes: collections.OrderedDict[str | None, _Lane] = collections.OrderedDict()
        self._key_of: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self._key_of)

    def __contains__(self, task_uuid: str) -> bool:
        return task_uuid in self._key_of

    def push(self, key: str | None, task_uuid: str) -> None:
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.seq[task_uuid] = lane.head + len(lane.tasks)
        lane.tasks.append(task_uuid)
        self._key_of[task_uuid] = key

    def remove(self, task_uuid: str) -> bool:
        if task_uuid not in self._key_of:
            return False
        key = self._key_of.pop(task_uuid)
        lane = self._lanes[key]
        if lane.tasks[0] == task_uuid:
            lane.tasks.popleft()
            lane.head += 1
            del lane.seq[task_uuid]
        else:
            lane.tasks.remove(task_uuid)
            lane.seq = {uuid: lane.head + i for i, uuid in enumerate(lane.tasks)}
        if not lane.tasks:
            del self._lanes[key]
        return True

    def pop(self) -> str | None:
        """The next task; its key moves to the back of the rotation."""
        if not self._lanes:
            return None
        key, lane = next(iter(self._lanes.items()))
        task_uuid = lane.tasks.popleft()
        del lane.seq[task_uuid]
        lane.head += 1
        del self._key_of[task_uuid]
        del self._lanes[key]
        if lane.tasks:
            self._lanes[key] = lane
        return task_uuid

    def position(self, task_uuid: str) -> int | None:
        """The 1-based place ``pop`` would serve ``task_uuid`` at, or None if it is not queued.

        With index ``i`` in its lane, the tasks served before it are the first ``i`` of every
        lane (``min(len, i)`` each, its own lane included) plus the ``i``-th of every lane ahead
        of its own in the rotation that has one.
        """
        key = self._key_of.get(task_uuid, _ABSENT)
        if key is _ABSENT:
            return None
        own = self._lanes[key]
        i = own.index(task_uuid)
        before = 0
        ahead = True
        for lane in self._lanes.values():
            n = len(lane.tasks)
            if lane is own:
                ahead = False
                before += i
            else:
                before += min(n, i) + (1 if ahead and n > i else 0)
        return before + 1

    def order(self) -> list[str]:
        """Every queued task in the order ``pop`` would return them (O(queue); tests, debugging)."""
        lanes = [list(lane.tasks) for lane in self._lanes.values()]
        ordered = []
        for depth in range(max((len(lane) for lane in lanes), default=0)):
            ordered.extend(lane[depth] for lane in lanes if depth < len(lane))
        return ordered


@dataclasses.dataclass
class _Running:
    task_uuid: str
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    started: float = dataclasses.field(default_factory=time.perf_counter)


class TaskManager:
    """Admits, queues, renders and tracks ``videoInference`` tasks (implements ``TaskService``).

    ``pool_factory(profile)`` builds a ``WorkerPool`` the first time a model is needed; the pool is
    kept warm for later tasks. ``url_guard`` (the gateway's ``UrlGuard``, the allow-list webhooks
    use) and ``assets_dir`` (``<data-dir>/assets``) build each task's ``MediaResolver``, which
    fetches its media inputs as the task's owner. ``artifacts`` (anything with ``put(video_uuid, source, content_type,
    ttl_s)``) receives each finished file; ``on_result`` is the gateway's hook for URLs, uploads and
    webhooks; ``metrics`` (``farm.gateway.metrics.FarmMetrics`` or alike) is told about tasks, stages and
    workers.

    Cost (``includeCost``): ``(video model seconds x gpus_per_worker + audio model seconds x
    min(gpus_per_worker, 0.25)) x price_per_gpu_second`` — measured model time of the result on
    the GPUs its actors reserve (the audio actor takes at most a quarter GPU, see ``WorkerPool``).

    Example::

        manager = TaskManager(TaskStore(data / "tasks.db"), pool_factory=WorkerPool, out_dir=data / "out")
        manager.start()
        ack = manager.submit(task_json, api_key="k1")   # status "queued", queue_position 1
        ...
        manager.stop()
    """

    #: ``get`` and ``submit`` never wait on Ray, the network or a long lock: a short SQLite read
    #: or write and an O(keys) queue position. Gateways call them on their event loop (sending
    #: only large submits, whose validation decodes media, to a thread).
    inline_calls = True

    def __init__(
        self,
        store: TaskStore,
        *,
        pool_factory: PoolFactory,
        out_dir: str | Path,
        max_queue: int = 100,
        artifacts: Any = None,
        on_result: ResultCallback | None = None,
        metrics: Any = None,
        price_per_gpu_second: float = 0.0,
        gpus_per_worker: float = 0.0,
        known_models: tuple[str, ...] | None = None,
        profile_lookup: Callable[[str], ModelProfile] = get_profile,
        render: RenderFunction = render_task,
        url_guard: Any = None,
        assets_dir: str | Path | None = None,
    ):
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._store = store
        self._pool_factory = pool_factory
        self._out_dir = Path(out_dir)
        self._max_queue = max_queue
        self._artifacts = artifacts
        self._on_result = on_result
        self._metrics = metrics
        self._price = price_per_gpu_second
        self._gpus = gpus_per_worker
        self._known_models = known_models
        self._profile_lookup = profile_lookup
        self._render = render
        self._url_guard = url_guard
        self._assets_dir = Path(assets_dir) if assets_dir is not None else None

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue = _FairQueue()
        #: Submits past the admission check whose task is being written (their queue places).
        self._admitting_now = 0
        self._running: _Running | None = None
        self._stopping = False
        self._admitting = True
        self._thread: threading.Thread | None = None
        self._pools: dict[str, WorkerPool] = {}
        self._subscribers: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self._task_seconds: collections.deque[float] = collections.deque(maxlen=20)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Re-queue every task the store holds as queued or running, then start the runner thread."""
        with self._lock:
            if self._thread is not None:
                return
            self._queue = _FairQueue()
            for record in self._store.unfinished_tasks():
                # A task left running died with the previous process: it renders again from the
                # start, with the same persisted seeds, so the result is the same.
                if record.status == "running":
                    self._reset_to_queued(record)
                self._queue.push(record.api_key, record.task_uuid)
            self._stopping = False
            self._admitting = True
            self._set_queue_depth()
            self._thread = threading.Thread(target=self._run_loop, name="task-runner", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 30.0, *, shutdown_pools: bool = False) -> None:
        """Stop admitting; interrupt the running task and leave it queued in the store; join.

        The interrupted task keeps its persisted seeds and renders again on the next ``start``.
        ``shutdown_pools`` also kills the worker pools this manager created and the cancellation
        flag actor (``farm.workers.actors.CancelFlags``).
        """
        with self._lock:
            self._admitting = False
            self._stopping = True
            if self._running is not None:
                self._running.cancel.set()
            self._wake.notify_all()
            thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        if shutdown_pools:
            from farm.workers.actors import shutdown_cancel_flags

            for pool in self._pools.values():
                pool.shutdown()
            self._pools.clear()
            shutdown_cancel_flags()

    # -- TaskService ---------------------------------------------------------------------------

    def submit(self, raw_task: dict, api_key: str | None) -> TaskRecord:
        """Validate, persist and enqueue a task; see ``TaskService.submit``."""
        task = self._parse(raw_task)
        body = canonical_body(raw_task)
        # No read before the write: a repeated UUID (rare) is caught by the primary key below and
        # answered from the stored task, which spares every fresh submit a SQLite lookup.
        refusal = None
        with self._lock:
            if not self._admitting:
                refusal = QueueFullError("the farm is shutting down; retry later", retry_after_s=self._retry_after())
            elif len(self._queue) + self._admitting_now >= self._max_queue:
                refusal = QueueFullError(
                    f"the queue is full ({self._max_queue} tasks waiting)", retry_after_s=self._retry_after()
                )
            else:
                # A place in the queue is held while the task is written, so the SQLite write
                # happens outside the lock and neither other submits nor lookups wait for it.
                self._admitting_now += 1
        if refusal is not None:
            # A client retrying a submit whose acknowledgement it lost still gets that answer.
            existing = self._store.get_task(task.task_uuid)
            if existing is not None:
                return self._resubmitted(existing, body, api_key)
            raise refusal
        record = None
        try:
            # The base seed is fixed now and persisted, so a render resumed after a restart gives
            # the same pictures as the one that was interrupted.
            base_seed = task.seed if task.seed is not None else secrets.randbelow(2**31)
            record = self._store.insert_task(
                task.task_uuid, api_key, body, base_seed=base_seed, seeds=result_seeds(task, base_seed)
            )
        except sqlite3.IntegrityError:
            record = None
        finally:
            with self._lock:
                self._admitting_now -= 1
                # Stored first, queued second: the runner never pops a task the store lacks. (A
                # ``start`` that ran meanwhile may have queued it from the store already.)
                if record is not None and task.task_uuid not in self._queue:
                    self._queue.push(api_key, task.task_uuid)
                    self._set_queue_depth()
                    self._wake.notify_all()
                    record = dataclasses.replace(record, queue_position=self._queue.position(task.task_uuid))
        if record is None:
            # Another submit of this UUID won the race to the primary key.
            existing = self._store.get_task(task.task_uuid)
            if existing is None:
                raise DuplicateTaskError(f"taskUUID {task.task_uuid} was already submitted")
            return self._resubmitted(existing, body, api_key)
        if self._metrics:
            self._metrics.task_submitted()
        self._publish(ProgressEvent(task_uuid=task.task_uuid, kind="queued", queue_position=record.queue_position))
        return record

    def get(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        """The task and its results; ``TaskNotFoundError`` if absent or another key's."""
        return self._with_position(self._visible(task_uuid, api_key))

    def cancel(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        """Cancel a queued task at once, or a running one at its next denoising step.

        Returns the record as it is now: ``cancelled`` for a queued task; for a running task the
        status turns ``cancelled`` once its workers have stopped (a ``cancelled`` event follows).
        Finished tasks are returned unchanged.
        """
        record = self._visible(task_uuid, api_key)
        with self._lock:
            if self._queue.remove(task_uuid):
                self._finish_cancelled(task_uuid, "cancelled while queued")
                self._set_queue_depth()
            elif self._running is not None and self._running.task_uuid == task_uuid:
                self._running.cancel.set()
                return record
            else:
                return record
        if self._metrics:
            self._metrics.task_finished("cancelled")
        self._publish(ProgressEvent(task_uuid=task_uuid, kind="cancelled", message="cancelled while queued"))
        return self._store.get_task(task_uuid)

    async def watch(self, task_uuid: str, api_key: str | None) -> AsyncIterator[ProgressEvent]:
        """The current state as an event, then every event in order until done/error/cancelled."""
        self._visible(task_uuid, api_key)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        subscriber = (loop, inbox)
        # Subscribe before reading the state so no event falls between the two.
        with self._lock:
            self._subscribers.setdefault(task_uuid, []).append(subscriber)
        try:
            record = self.get(task_uuid, api_key)
            first = self._state_event(record)
            yield first
            if first.kind in _TERMINAL:
                return
            while True:
                event = await inbox.get()
                yield event
                if event.kind in _TERMINAL:
                    return
        finally:
            with self._lock:
                subscribers = self._subscribers.get(task_uuid, [])
                if subscriber in subscribers:
                    subscribers.remove(subscriber)
                if not subscribers:
                    self._subscribers.pop(task_uuid, None)

    # -- extras for the gateway ----------------------------------------------------------------

    def update_result(self, record: ResultRecord, *, delivered: bool = False) -> None:
        """Store a result's new delivery state (URL, upload/webhook outcome); ``delivered`` emits an event."""
        self._store.upsert_result(record)
        if delivered:
            self._publish(ProgressEvent(task_uuid=record.task_uuid, kind="delivered", result_index=record.index))

    def pending_deliveries(self) -> list[tuple[ResultRecord, VideoInferenceTask]]:
        """Results whose upload or webhook is still ``pending``, with their tasks: deliveries a
        restart cut off, for the gateway to run again (same idempotency key)."""
        pending = []
        for record, body in self._store.pending_deliveries():
            try:
                pending.append((record, self._parse(json.loads(body))))
            except (TaskValidationError, ValueError) as exc:
                log.warning(
                    "cannot redeliver %s result %d: its task no longer parses (%s)", record.task_uuid, record.index, exc
                )
        return pending

    def result_path(self, task_uuid: str, index: int) -> Path | None:
        """The local file of a finished result (before any artifact store moved it)."""
        return self._store.result_path(task_uuid, index)

    def queue_depth(self) -> int:
        """How many tasks wait."""
        with self._lock:
            return len(self._queue)

    # -- the runner ----------------------------------------------------------------------------

    def _run_loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and len(self._queue) == 0:
                    self._wake.wait()
                if self._stopping:
                    return
                task_uuid = self._queue.pop()
                self._running = _Running(task_uuid)
                running = self._running
                self._set_queue_depth()
            try:
                self._run_one(running)
            except BaseException:  # the runner must outlive any single task
                log.exception("runner failed on task %s", task_uuid)
                self._fail(task_uuid, "internalError", "the farm failed while running this task")
            finally:
                with self._lock:
                    self._running = None

    def _run_one(self, running: _Running) -> None:
        task_uuid = running.task_uuid
        record = self._store.get_task(task_uuid)
        if record is None:
            return
        queued_s = time.time() - record.created_at
        try:
            task = self._parse(json.loads(record.body))
            profile = self._profile_lookup(task.model)
        except (TaskValidationError, KeyError, ValueError) as exc:
            self._fail(
                task_uuid,
                "invalidParameter",
                f"task {task_uuid} cannot be resumed: its model or parameters are no longer served ({exc})",
            )
            return
        base_seed = self._store.get_base_seed(task_uuid)
        # A resumed task renders only the results an earlier run did not finish: a delivered
        # result is never rendered (nor delivered) twice, and one that failed on its own (safety)
        # would fail again with the same seed.
        todo = [result.index for result in record.results if result.status not in _FINISHED]
        stored = {result.index: result for result in record.results}
        if not todo:
            self._finish_task(task_uuid)
            return

        self._store.update_task_status(task_uuid, "running")
        for index in todo:
            self._store.upsert_result(dataclasses.replace(stored[index], status="running", progress=0.0))
        if self._metrics:
            self._metrics.observe_stage("queued", queued_s)
        self._publish(ProgressEvent(task_uuid=task_uuid, kind="running"))

        try:
            pool = self._pool_for(profile)
        except Exception as exc:  # reported on the task
            log.exception("could not start workers for %s", profile.model_id)
            self._fail(
                task_uuid, error_info(exc).code, f"could not start workers for {profile.model_id}: {exc}", task=task
            )
            return
        workers = len(pool.video_workers)
        if self._metrics:
            self._metrics.set_workers(workers, 0)

        # Each result is delivered as soon as its file is final (render_task calls ``on_result``
        # from that result's finisher thread), while the others still render. ``delivered``
        # claims an index under ``claim_lock`` so the list render_task returns never delivers a
        # result twice; ``deliver_lock`` keeps one result's store writes and hook calls together.
        delivered: set[int] = set()
        claim_lock, deliver_lock = threading.Lock(), threading.Lock()

        def deliver_once(result: RenderResult) -> None:
            with claim_lock:
                if result.index in delivered:
                    return
                delivered.add(result.index)
            with deliver_lock:
                self._deliver(task, result, stored[result.index])

        progress = _ProgressTracker(self, task_uuid, task, record.results)
        try:
            results = self._render(
                task,
                pool,
                self._out_dir,
                base_seed=base_seed,
                on_event=progress.on_render_event,
                should_cancel=running.cancel.is_set,
                results=todo,
                on_result=deliver_once,
                resolver=self._resolver(record.api_key),
            )
        except TaskCancelledError:
            if self._stopping:
                # Shutdown, not the owner: keep the task for the next start.
                self._reset_to_queued(self._store.get_task(task_uuid))
                log.info("task %s interrupted by shutdown; it resumes on restart", task_uuid)
            else:
                self._finish_cancelled(task_uuid, "cancelled while running")
                if self._metrics:
                    self._metrics.task_finished("cancelled")
                self._publish(ProgressEvent(task_uuid=task_uuid, kind="cancelled", message="cancelled while running"))
            return
        except TaskValidationError as exc:
            # Media inputs are fetched and decoded by the render (they may be URLs or assets):
            # a bad one fails the task like a submit-time violation, naming the field.
            first = exc.violations[0] if exc.violations else None
            message = "; ".join(str(v) for v in exc.violations) or str(exc)
            self._fail(task_uuid, exc.code, message, parameter=first.field if first else None, task=task)
            return
        except Exception as exc:  # noqa: BLE001 - reported on the task
            info = error_info(exc)
            self._fail(task_uuid, info.code, str(exc), task=task)
            return
        finally:
            if self._metrics:
                self._metrics.set_workers(0, workers)

        self._task_seconds.append(time.perf_counter() - running.started)
        for result in results:
            deliver_once(result)
        self._finish_task(task_uuid)

    def _finish_task(self, task_uuid: str) -> None:
        """End a task whose results all finished: ``success`` if any succeeded, else ``error``.

        A result that failed on its own (e.g. ``safety``) keeps its error in GetResponse; the
        task still counts as a success when another result was delivered (docs/task-schema.md).
        """
        record = self._store.get_task(task_uuid)
        results = record.results if record else ()
        failed = [r for r in results if r.status != "success"]
        if results and len(failed) == len(results):
            first = failed[0]
            message = first.error_message or "every result failed"
            self._store.update_task_status(task_uuid, "error", message)
            if self._metrics:
                self._metrics.task_finished("error")
            self._publish(
                ProgressEvent(
                    task_uuid=task_uuid,
                    kind="error",
                    message=message,
                    extra={"code": first.error_code or "renderFailed"},
                )
            )
            return
        self._store.update_task_status(task_uuid, "success")
        if self._metrics:
            self._metrics.task_finished("success")
        self._publish(
            ProgressEvent(
                task_uuid=task_uuid, kind="done", extra={"succeeded": len(results) - len(failed), "failed": len(failed)}
            )
        )

    def _deliver(self, task: VideoInferenceTask, result: RenderResult, stored: ResultRecord) -> None:
        """Record one finished result, hand it to the artifact store and the gateway's hook.

        A result that failed on its own (``result.error``) is recorded as an error and only the
        hook hears of it (for a webhook in the platform's error shape); nothing is stored or
        uploaded. Upload and webhook are marked ``pending`` in the same write that records the
        result, so a delivery cut off by a restart is found and retried (``pending_deliveries``).
        """
        if result.error is not None:
            info = error_info(result.error)
            record = dataclasses.replace(
                stored,
                status="error",
                seed=result.seed,
                progress=1.0,
                error_code=info.code,
                error_message=str(result.error) or info.code,
                error_parameter=getattr(result.error, "parameter", None) or None,
                webhook_status="pending" if task.webhook_url else stored.webhook_status,
            )
            self._store.upsert_result(record)
            if self._metrics:
                self._metrics.result_finished("error")
                self._metrics.render_failed(info.code)
            self._publish(
                ProgressEvent(
                    task_uuid=task.task_uuid,
                    kind="result",
                    result_index=result.index,
                    message=record.error_message,
                    extra={"code": info.code, "seed": result.seed},
                )
            )
            self._call_hook(task, record)
            return
        if self._metrics:
            # Observes the render and encode stages too.
            self._metrics.observe_result(result)
            self._metrics.result_finished("success")
        cost = None
        if task.include_cost:
            gpu_seconds = result.timings.model_s * self._gpus + result.timings.audio_s * min(self._gpus, 0.25)
            cost = round(gpu_seconds * self._price, 8)
        path = result.path
        if self._artifacts is not None:
            try:
                artifact = self._artifacts.put(
                    result.video_uuid, result.path, _CONTENT_TYPES[task.output_format], task.ttl
                )
                path = getattr(artifact, "path", path)
            except Exception:  # the file stays local; delivery reports the failure
                log.exception("artifact store refused %s", result.video_uuid)
        record = dataclasses.replace(
            stored,
            status="success",
            seed=result.seed,
            video_uuid=result.video_uuid,
            cost=cost,
            progress=1.0,
            extended_prompt=result.extended_prompt,
            upload_status="pending" if task.upload_endpoint else stored.upload_status,
            webhook_status="pending" if task.webhook_url else stored.webhook_status,
        )
        self._store.upsert_result(record, path=path)
        extra = {"video_uuid": result.video_uuid, "seed": result.seed}
        if result.extended_prompt:
            extra["extended_prompt"] = result.extended_prompt
        self._publish(ProgressEvent(task_uuid=task.task_uuid, kind="result", result_index=result.index, extra=extra))
        self._call_hook(task, record)

    def _call_hook(self, task: VideoInferenceTask, record: ResultRecord) -> None:
        if self._on_result is None:
            return
        started = time.perf_counter()
        try:
            updated = self._on_result(record, task)
            if isinstance(updated, ResultRecord):
                self._store.upsert_result(updated)
        except Exception:  # one failed delivery must not stop the farm
            log.exception("on_result failed for %s result %d", task.task_uuid, record.index)
        if self._metrics:
            self._metrics.observe_stage("deliver", time.perf_counter() - started)

    # -- helpers -------------------------------------------------------------------------------

    def _parse(self, raw: dict) -> VideoInferenceTask:
        if self._known_models is None:
            return parse_task(raw)
        return parse_task(raw, known_models=self._known_models)

    def _resolver(self, api_key: str | None) -> MediaResolver:
        """Fetches the task's media inputs as its owner: another key's assets read as not found."""
        guard = self._url_guard if self._url_guard is not None else UrlGuard(())
        return MediaResolver(guard=guard, assets_dir=self._assets_dir, artifacts=self._artifacts, api_key=api_key)

    def _pool_for(self, profile: ModelProfile) -> WorkerPool:
        pool = self._pools.get(profile.model_id)
        if pool is None:
            pool = self._pool_factory(profile)
            self._pools[profile.model_id] = pool
        return pool

    def _visible(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        record = self._store.get_task(task_uuid)
        # A task submitted with a key belongs to that key alone; the same "not found" answer for
        # absent and foreign tasks reveals nothing about other clients' UUIDs.
        if record is None or (record.api_key is not None and record.api_key != api_key):
            raise TaskNotFoundError(f"task {task_uuid} not found")
        return record

    def _with_position(self, record: TaskRecord) -> TaskRecord:
        """``record`` with its 1-based queue position while queued (O(keys), takes the lock briefly)."""
        if record.status != "queued":
            return record
        with self._lock:
            position = self._queue.position(record.task_uuid)
        return dataclasses.replace(record, queue_position=position)

    def _resubmitted(self, existing: TaskRecord, body: str, api_key: str | None) -> TaskRecord:
        """The answer to a second submit of a stored UUID: the task if identical, else a refusal."""
        if existing.body != body or existing.api_key != api_key:
            raise DuplicateTaskError(f"taskUUID {existing.task_uuid} was already submitted with a different body")
        return self._with_position(existing)

    def _reset_to_queued(self, record: TaskRecord | None) -> None:
        if record is None:
            return
        self._store.update_task_status(record.task_uuid, "queued")
        for result in record.results:
            # Finished results stay as they are: the resumed run renders only the others.
            if result.status not in _FINISHED:
                self._store.upsert_result(dataclasses.replace(result, status="queued", progress=0.0))

    def _finish_cancelled(self, task_uuid: str, message: str) -> None:
        record = self._store.get_task(task_uuid)
        self._store.update_task_status(task_uuid, "cancelled", message)
        for result in record.results if record else ():
            if result.status not in _FINISHED:
                self._store.upsert_result(
                    dataclasses.replace(
                        result, status="cancelled", error_code=TaskCancelledError.code, error_message=message
                    )
                )
                if self._metrics:
                    self._metrics.result_finished("cancelled")

    def _fail(
        self,
        task_uuid: str,
        code: str,
        message: str,
        *,
        parameter: str | None = None,
        task: VideoInferenceTask | None = None,
    ) -> None:
        """Every unfinished result fails with ``code``; the task ends by ``_finish_task``'s rule
        (still ``success`` if a result was delivered before the failure). With ``task`` (parsed)
        each failed result also goes to the delivery hook, so a ``webhookURL`` hears of it."""
        record = self._store.get_task(task_uuid)
        for result in record.results if record else ():
            if result.status not in _FINISHED:
                failed = dataclasses.replace(
                    result,
                    status="error",
                    error_code=code,
                    error_message=message,
                    error_parameter=parameter,
                    webhook_status="pending" if task is not None and task.webhook_url else result.webhook_status,
                )
                self._store.upsert_result(failed)
                if self._metrics:
                    self._metrics.result_finished("error")
                    self._metrics.render_failed(code)
                if task is not None:
                    self._call_hook(task, failed)
        if record is not None and any(r.status == "success" for r in record.results):
            self._finish_task(task_uuid)
            return
        self._store.update_task_status(task_uuid, "error", message)
        if self._metrics:
            self._metrics.task_finished("error")
        extra = {"code": code, **({"parameter": parameter} if parameter else {})}
        self._publish(ProgressEvent(task_uuid=task_uuid, kind="error", message=message, extra=extra))

    def _retry_after(self) -> float:
        if not self._task_seconds:
            return _DEFAULT_RETRY_AFTER_S
        return round(sum(self._task_seconds) / len(self._task_seconds), 1)

    def _set_queue_depth(self) -> None:
        if self._metrics:
            self._metrics.set_queue_depth(len(self._queue))

    def _state_event(self, record: TaskRecord) -> ProgressEvent:
        """The first event of ``watch``: where the task stands now."""
        kind = {
            "queued": "queued",
            "running": "running",
            "success": "done",
            "error": "error",
            "cancelled": "cancelled",
        }[record.status]
        message = (self._store.get_error(record.task_uuid) or "") if kind in ("error", "cancelled") else ""
        return ProgressEvent(
            task_uuid=record.task_uuid, kind=kind, queue_position=record.queue_position, message=message
        )

    def _publish(self, event: ProgressEvent) -> None:
        """Hand ``event`` to every watcher of its task, in each watcher's own event loop."""
        if event.task_uuid not in self._subscribers:
            # Nobody watches (the common case): a plain dict lookup, atomic under the GIL, spares
            # the lock. A watcher subscribing right now reads the state after subscribing anyway.
            return
        with self._lock:
            subscribers = list(self._subscribers.get(event.task_uuid, ()))
        for loop, inbox in subscribers:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, event)
            except RuntimeError:  # the watcher's loop is closed; its finally clause cleans up
                pass


class _ProgressTracker:
    """Turns ``RenderEvent``s into ``ProgressEvent``s and throttled progress writes."""

    def __init__(
        self, manager: TaskManager, task_uuid: str, task: VideoInferenceTask, results: tuple[ResultRecord, ...]
    ):
        self._manager = manager
        self._task_uuid = task_uuid
        self._chunks: dict[int, tuple[int, int]] = {}
        self._steps: dict[int, tuple[int, int]] = {}
        self._frames: dict[int, int] = {}
        self._num_frames = task.num_frames
        self._records = {r.index: r for r in results}
        self._written = collections.defaultdict(float)
        self._encoding_announced: set[int] = set()

    def on_render_event(self, event: RenderEvent) -> None:
        index = event.result_index
        if event.stage == "chunk":
            self._chunks[index] = (event.done, event.total)
            if self._manager._metrics:
                self._manager._metrics.observe_chunk(event.seconds)
            self._manager._publish(
                ProgressEvent(
                    task_uuid=self._task_uuid,
                    kind="chunks",
                    result_index=index,
                    chunks_done=event.done,
                    chunks_total=event.total,
                )
            )
        elif event.stage == "denoise":
            # Inside the chunks in flight: a chunk of a real model takes minutes, and all chunks of
            # a result often run at once, so chunk counts alone would sit at 0 until the end.
            self._steps[index] = (event.done, event.total)
            self._manager._publish(
                ProgressEvent(
                    task_uuid=self._task_uuid,
                    kind="steps",
                    result_index=index,
                    extra={"stepsDone": event.done, "stepsTotal": event.total},
                )
            )
        elif event.stage == "encode":
            self._frames[index] = event.done
            if index not in self._encoding_announced or event.done == event.total:
                self._encoding_announced.add(index)
                self._manager._publish(
                    ProgressEvent(
                        task_uuid=self._task_uuid,
                        kind="encoding",
                        result_index=index,
                        frames_encoded=event.done,
                        frames_total=event.total,
                    )
                )
        else:
            return
        self._write(index, force=event.stage == "encode" and event.done == event.total)

    def _write(self, index: int, force: bool) -> None:
        # Half the weight on rendering (denoising steps, or whole chunks), half on frames encoded.
        done, total = self._chunks.get(index, (0, 1))
        steps_done, steps_total = self._steps.get(index, (0, 1))
        rendered = max(done / max(total, 1), steps_done / max(steps_total, 1))
        progress = 0.5 * rendered + 0.5 * self._frames.get(index, 0) / max(self._num_frames, 1)
        now = time.monotonic()
        if force or now - self._written[index] >= _PROGRESS_WRITE_S:
            self._written[index] = now
            self._manager._store.set_progress(self._task_uuid, index, round(min(progress, 1.0), 4))
