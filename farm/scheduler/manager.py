"""The gateway's task manager: admission, the store, hand-over to the scheduler, events, Watch.

``TaskManager`` implements ``farm.domain.records.TaskService`` for both gateway faces. A task is
validated and persisted in the ``TaskStore`` before it is acknowledged, then handed over to the
scheduler (``farm.scheduler.actor``: a detached actor in the Ray cluster, or a core in this
process), which owns its render from then on. One pump thread reads the scheduler's events in
order and turns them into store writes, ``ProgressEvent`` s for ``Watch`` subscribers and, for a
finished result, the artifact store and the delivery hook. This process never holds a frame.

Identity: a task is (API key, taskUUID). The first key to submit a taskUUID stores it under that
UUID; another key submitting the same UUID gets its own task, stored under a UUID derived from its
key and the client's UUID (``_scoped_id``), and every answer, event and webhook names the client's
UUID. So a key never learns which UUIDs other keys use (no ``duplicateTaskUUID`` across keys).

Bodies: inline media (data URIs, base64) moves to the asset directory at submit
(``farm.io.media.store_inline_media``, content-addressed, owned by the key) and the stored body
names the asset; duplicates are compared on the digest of the body as the client sent it. The
store keeps an ended task's body out of memory; ``prune`` deletes ended tasks past the retention.

Watch ends with ``done`` (or ``error``) only once no result of the task has an upload or webhook
``pending``: ``delivered`` events come first (``update_result``), though the task's status in the
store turns ``success`` at once.

Restarts: on ``start`` the manager asks the scheduler for a snapshot; tasks the scheduler still
holds go on where they are (nothing is rendered twice), finished-but-unrecorded results are
recorded and delivered, and every other unfinished task of the store is handed over again (only
its unfinished results render, with their persisted seeds; a ``queued`` event tells watchers). A
new scheduler epoch (the control plane restarted) triggers the same resync. A cancel the scheduler
could not take (unreachable, restarting) ends the task in the store at once, and one it took is
remembered until the task ends: a resync never hands either over again. Encoder leftovers
(``out/.<name>.partial-<hex>``) of renders no scheduler holds are deleted at start.

Threads: gateway handlers call ``submit``/``get``/``cancel`` from any thread; the pump thread
applies events; ``watch`` subscribers live in asyncio event loops and receive events through
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import logging
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from farm.domain.constants import output_format
from farm.domain.errors import (
    DuplicateTaskError,
    QueueFullError,
    TaskCancelledError,
    TaskNotFoundError,
    TaskValidationError,
    UnavailableError,
)
from farm.domain.records import ProgressEvent, ResultRecord, ResultStatus, TaskRecord, progress_extra
from farm.domain.task import VideoInferenceTask
from farm.domain.validation import parse_task
from farm.render.executor import MediaConfig
from farm.render.results import RenderResult, ResultTimings, result_seeds
from farm.scheduler.actor import SchedulerClient
from farm.scheduler.events import ResultOutcome, SchedulerEvent, Snapshot, TaskSnapshot, TaskSpec
from farm.scheduler.progress import ProgressTracker
from farm.scheduler.store import TaskStore, body_digest

log = logging.getLogger(__name__)

#: Called from the pump thread for each finished result: ``(record, task)``. It may return an
#: updated ``ResultRecord`` (URL, upload/webhook outcome), which is stored; exceptions are logged.
ResultCallback = Callable[[ResultRecord, VideoInferenceTask], "ResultRecord | None"]

_TERMINAL = ("done", "error", "cancelled")
_FINISHED = ("success", "error", "cancelled")
#: Retry-After when no task has finished yet to estimate from.
_DEFAULT_RETRY_AFTER_S = 5.0
#: How long one events call waits for news.
_EVENTS_WAIT_S = 1.0
#: How long ``cancel`` waits for the scheduler's ``cancelled`` event of a task it took (a queued
#: task's comes at once; a running one's when its units stop, after which it answers as is).
CANCEL_WAIT_S = 2.0
#: Scoped ids tried for one (key, taskUUID) before giving up (two suffice unless SHA-256 collides).
_MAX_SCOPES = 4
#: What the encoder names a file while writing it (farm.io.encode): ``.<name>.partial-<hex>``.
_PARTIAL_MARK = ".partial-"


def canonical_body(raw: dict) -> str:
    """The task JSON as stored and compared for duplicates: sorted keys, no whitespace."""
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def _scoped_id(api_key: str | None, task_uuid: str) -> str:
    """The store's id for ``api_key``'s task ``task_uuid`` when another key holds that UUID: a
    UUID v4-shaped digest of both (the key makes it unguessable to other keys)."""
    key = b"\x01" + api_key.encode("utf-8", "surrogatepass") if api_key is not None else b"\x00"
    digest = hashlib.sha256(b"farm task scope\0" + key + b"\0" + task_uuid.encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _pending(record: TaskRecord) -> bool:
    """Whether an upload or webhook of some result of ``record`` has not settled yet."""
    return any("pending" in (r.upload_status, r.webhook_status) for r in record.results)


class TaskManager:
    """Admits, persists, hands over and tracks ``videoInference`` tasks (implements ``TaskService``).

    ``scheduler`` is a ``SchedulerClient`` (the cluster's scheduler actor, or an in-process core).
    ``artifacts`` (``put(video_uuid, source, content_type, ttl_s, owner_key=...)``) receives each
    finished file with the API key that owns it; ``on_result`` is the gateway's hook for URLs,
    uploads and webhooks; ``metrics`` (``farm.gateway.metrics.FarmMetrics`` or alike) is told about
    tasks, stages and the scheduler's pools. ``media`` says where media inputs come from (the
    allow-list, ``<data>/assets``, ``<data>/artifacts``); each task is resolved as its owner, and
    with ``assets_dir`` set its inline media is stored there at submit.

    Cost (``includeCost``): ``(video model seconds x gpus_per_worker + audio model seconds x
    min(gpus_per_worker, 0.25)) x price_per_gpu_second``.
    """

    #: ``get`` and ``submit`` never wait on Ray, the network or a long lock.
    inline_calls = True

    def __init__(
        self,
        store: TaskStore,
        *,
        scheduler: SchedulerClient,
        out_dir: str | Path,
        max_queue: int = 100,
        artifacts: Any = None,
        on_result: ResultCallback | None = None,
        metrics: Any = None,
        price_per_gpu_second: float = 0.0,
        gpus_per_worker: float = 0.0,
        known_models: Sequence[str] | None = None,
        media: MediaConfig | None = None,
    ):
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {max_queue}")
        self._store = store
        self._scheduler = scheduler
        self._out_dir = Path(out_dir)
        self._max_queue = max_queue
        self._artifacts = artifacts
        self._result_hook = on_result
        self._metrics = metrics
        self._price = price_per_gpu_second
        self._gpus = gpus_per_worker
        self.known_models = tuple(known_models) if known_models is not None else None
        self._media = media or MediaConfig()

        self._lock = threading.Lock()
        #: Held while the pump applies an event and while ``cancel`` ends a task: both may end the
        #: same task at once (read its status, then write the end), and only one of them may.
        self._ending = threading.RLock()
        #: Held while a task's final Watch event is decided (its end, or its last delivery
        #: settling, whichever comes last, publishes it: exactly once).
        self._finals = threading.Lock()
        #: Held while a submit stores and touches its assets, and while one expired asset is deleted.
        self._assets = threading.Lock()
        #: Notified whenever a task ends (``cancel`` waits for the scheduler's end of a task).
        self._ended = threading.Condition()
        #: Tasks handed over and not started yet (their queue places), and those rendering.
        self._queued: dict[str, None] = {}
        self._running: set[str] = set()
        #: Tasks whose cancel the scheduler took and has not ended yet: a resync ends them
        #: instead of handing them over again.
        self._cancelling: set[str] = set()
        self._positions: dict[str, int] = {}
        self._admitting_now = 0
        self._admitting = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._cursor = 0
        self._epoch: str | None = None
        self._swept = False
        #: Unfinished tasks as parsed from their stored bodies (dropped when they end).
        self._tasks: dict[str, VideoInferenceTask] = {}
        self._progress: dict[str, ProgressTracker] = {}
        self._subscribers: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]]] = {}
        self._task_seconds: collections.deque[float] = collections.deque(maxlen=20)
        self._started_at: dict[str, float] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Resync with the scheduler (see the module docstring), then start the event pump."""
        if self._thread is not None:
            return
        self._stopping.clear()
        with self._ending:
            self._resync()
        self._admitting = True
        self._thread = threading.Thread(target=self._pump, name="task-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0, *, shutdown_scheduler: bool = False) -> None:
        """Stop admitting and stop reading events. Renders go on in the scheduler (a restarted
        gateway picks them up) unless ``shutdown_scheduler`` stops it and its workers too."""
        self._admitting = False
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
        self._scheduler.close(shutdown=shutdown_scheduler)

    # -- TaskService ---------------------------------------------------------------------------

    def submit(self, raw_task: dict, api_key: str | None) -> TaskRecord:
        """Validate, persist and hand over a task; see ``TaskService.submit``."""
        task = self._parse(raw_task)
        client_uuid = task.task_uuid
        canonical = canonical_body(raw_task)
        digest = body_digest(canonical)
        refusal = self._admit_one()
        if refusal is not None:
            existing, _ = self._resolve(client_uuid, api_key)
            if existing is not None:
                return self._resubmitted(existing, digest, client_uuid)
            raise refusal
        record = None
        try:
            existing, task_id = self._resolve(client_uuid, api_key)
            if existing is not None:
                return self._resubmitted(existing, digest, client_uuid)
            stored = self._store_inline_media(raw_task, api_key)
            body = canonical
            if stored is not raw_task:
                task = self._parse(stored)
                body = canonical_body(stored)
            # The base seed is fixed now and persisted: a render resumed after a restart gives
            # the same pictures as the one that was interrupted.
            base_seed = task.seed if task.seed is not None else secrets.randbelow(2**31)
            for _ in range(_MAX_SCOPES):
                try:
                    record = self._store.insert_task(
                        task_id,
                        api_key,
                        body,
                        base_seed=base_seed,
                        seeds=result_seeds(task, base_seed),
                        digest=digest,
                    )
                    break
                except sqlite3.IntegrityError:  # submitted meanwhile, by this key or another
                    existing, task_id = self._resolve(client_uuid, api_key)
                    if existing is not None:
                        return self._resubmitted(existing, digest, client_uuid)
            else:
                raise DuplicateTaskError(f"taskUUID {client_uuid} cannot be stored; submit it with another taskUUID")
        finally:
            with self._lock:
                self._admitting_now -= 1
                if record is not None:
                    self._queued[record.task_uuid] = None
                    self._tasks[record.task_uuid] = task
                    # An estimate until the scheduler's first word on it (at the back of the queue).
                    position = self._positions.setdefault(record.task_uuid, len(self._queued))
        record = dataclasses.replace(record, queue_position=position)
        self._hand_over(record, stored)
        if self._metrics:
            self._metrics.task_submitted()
            self._set_queue_depth()
        self._publish(ProgressEvent(task_uuid=record.task_uuid, kind="queued", queue_position=position))
        return self._public(record, client_uuid)

    def _admit_one(self) -> QueueFullError | None:
        """Hold a place in the queue for a task being stored, or the refusal to give (full, stopping)."""
        with self._lock:
            if not self._admitting:
                return QueueFullError("the farm is shutting down; retry later", retry_after_s=self._retry_after())
            if len(self._queued) + self._admitting_now >= self._max_queue:
                return QueueFullError(
                    f"the queue is full ({self._max_queue} tasks waiting)", retry_after_s=self._retry_after()
                )
            self._admitting_now += 1
            return None

    def get(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        """The task and its results; ``TaskNotFoundError`` if absent or another key's."""
        return self._public(self._with_position(self._visible(task_uuid, api_key)), task_uuid)

    def cancel(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        """Cancel a task: a queued one ends at once, a running one at its next denoising step.

        The scheduler ends a task it holds (``cancelled while queued`` or ``... while running``,
        as it knows best: the store may not have heard of the start yet); this waits up to
        ``CANCEL_WAIT_S`` for that end. A task the scheduler does not hold (never handed over, or
        lost in a scheduler restart) or cannot be asked about ends here at once, and a resync
        does not hand it over again.
        """
        task_id = self._visible(task_uuid, api_key).task_uuid
        took = False
        with self._ending:
            record = self._store.get_task(task_id)
            if record is None or record.status in _FINISHED:
                return self.get(task_uuid, api_key)
            try:
                took = bool(self._scheduler.cancel(task_id))
            except Exception:  # an unreachable scheduler: the task ends cancelled here anyway
                log.exception("scheduler did not take the cancel of %s", task_id)
            if took:
                with self._lock:
                    self._cancelling.add(task_id)
            else:
                self._end_cancelled(task_id, f"cancelled while {record.status}")
        if took:
            with self._ended:
                self._ended.wait_for(lambda: self._ended_in_store(task_id), CANCEL_WAIT_S)
        return self.get(task_uuid, api_key)

    async def watch(self, task_uuid: str, api_key: str | None) -> AsyncIterator[ProgressEvent]:
        """The current state as an event, then every event in order until done/error/cancelled."""
        task_id = self._visible(task_uuid, api_key).task_uuid
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue = asyncio.Queue()
        subscriber = (loop, inbox)
        with self._lock:
            self._subscribers.setdefault(task_id, []).append(subscriber)
        try:
            # Read under ``_finals``: a final event is either in this state or published after it.
            with self._finals:
                record = self._store.get_task(task_id)
                if record is None:  # pruned meanwhile
                    raise TaskNotFoundError(f"task {task_uuid} not found")
                first = self._state_event(self._with_position(record))
            yield self._as_client(first, task_uuid)
            if first.kind in _TERMINAL:
                return
            while True:
                event = await inbox.get()
                yield self._as_client(event, task_uuid)
                if event.kind in _TERMINAL:
                    return
        finally:
            with self._lock:
                subscribers = self._subscribers.get(task_id, [])
                if subscriber in subscribers:
                    subscribers.remove(subscriber)
                if not subscribers:
                    self._subscribers.pop(task_id, None)

    # -- extras for the gateway ----------------------------------------------------------------

    def update_result(self, record: ResultRecord, *, delivered: bool = False) -> None:
        """Store a result's new delivery state (URL, upload/webhook outcome); ``delivered`` emits
        an event. When the last pending delivery of an ended task settles, the task's final
        Watch event (``done``/``error``), held until now, follows."""
        with self._finals:
            before = self._store.get_task(record.task_uuid)
            self._store.upsert_result(record)
            if delivered:
                self._publish(
                    ProgressEvent(
                        task_uuid=record.task_uuid,
                        kind="delivered",
                        result_index=record.index,
                        extra=progress_extra(upload=record.upload_status, webhook=record.webhook_status),
                    )
                )
            if before is None or before.status not in ("success", "error") or not _pending(before):
                return
            after = self._store.get_task(record.task_uuid)
            if after is not None and not _pending(after):
                self._publish(self._final_event(after))

    def pending_deliveries(self) -> list[tuple[ResultRecord, VideoInferenceTask]]:
        """Results whose upload or webhook is still ``pending``, with their tasks."""
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
        """The local file of a finished result (``task_uuid``: the store's id, as in its records)."""
        return self._store.result_path(task_uuid, index)

    def queue_depth(self) -> int:
        """How many tasks wait."""
        with self._lock:
            return len(self._queued)

    def prune(self, retention_s: float) -> int:
        """Delete the records of tasks that ended more than ``retention_s`` ago (their videos stay
        until their own ``ttl``); returns how many. The gateway calls it now and then."""
        return self._store.prune(time.time() - retention_s)

    def expire_assets(self, retention_s: float) -> int:
        """Delete the assets (uploaded, and the inline media of tasks) that no task has named for
        ``retention_s`` and no unfinished task names; returns how many. The gateway calls it now
        and then."""
        if self._media.assets_dir is None:
            return 0
        from farm.io.media import asset_references, expire_assets

        def named_by_unfinished_tasks() -> set[str]:
            # Named after this snapshot: touched under ``_assets``, which each deletion checks again.
            named: set[str] = set()
            for record in self._store.unfinished_tasks():
                try:
                    named |= asset_references(json.loads(record.body))
                except ValueError:  # an unreadable body fails its task elsewhere
                    continue
            return named

        return expire_assets(
            self._media.assets_dir,
            unused_since=time.time() - retention_s,
            keep=named_by_unfinished_tasks,
            lock=self._assets,
        )

    # -- hand-over and resync ------------------------------------------------------------------

    def _spec(self, record: TaskRecord, raw: dict, todo: Sequence[int] | None = None) -> TaskSpec:
        seeds = tuple(r.seed if r.seed is not None else 0 for r in sorted(record.results, key=lambda r: r.index))
        if todo is None:
            todo = [r.index for r in record.results if r.status not in _FINISHED]
        priority = raw.get("priority", 0) if isinstance(raw.get("priority", 0), int) else 0
        # The scheduler knows the task by the store's id (the client's UUID, or its scoped id).
        body = raw if raw.get("taskUUID") == record.task_uuid else {**raw, "taskUUID": record.task_uuid}
        return TaskSpec(
            task_uuid=record.task_uuid,
            body=body,
            api_key=record.api_key,
            seeds=seeds,
            results=tuple(todo),
            out_dir=str(self._out_dir),
            priority=priority,
            submitted_at=record.created_at,
            media=dataclasses.replace(self._media, api_key=record.api_key),
        )

    def _hand_over(self, record: TaskRecord, raw: dict) -> None:
        self._started_at[record.task_uuid] = time.perf_counter()
        try:
            self._scheduler.hand_over(self._spec(record, raw))
        except Exception:  # the scheduler is restarting: the resync hands it over again
            log.exception("hand-over of %s failed; it is retried when the scheduler is back", record.task_uuid)

    def _resync(self) -> None:
        """Match the store's unfinished tasks with what the scheduler holds (start, new epoch)."""
        snapshot: Snapshot = self._scheduler.snapshot()
        held = {t.task_uuid: t for t in snapshot.tasks}
        with self._lock:
            self._epoch, self._cursor = snapshot.epoch, snapshot.seq
            # Position events after ``seq`` are changes to these.
            self._positions = {t.task_uuid: t.position for t in snapshot.tasks if t.position is not None}
        if not self._swept:
            self._sweep_partials(held)
            self._swept = True
        # A task the scheduler still runs that the store has ended (its cancel was taken here
        # while the scheduler could not be asked): stop it there.
        for live in snapshot.tasks:
            if live.status in ("queued", "running"):
                known = self._store.get_task(live.task_uuid)
                if known is None or known.status in _FINISHED:
                    self._cancel_in_scheduler(live.task_uuid)
        for record in self._store.unfinished_tasks():
            raw = json.loads(record.body)
            state = held.get(record.task_uuid)
            with self._lock:
                cancelling = record.task_uuid in self._cancelling
            if cancelling and state is None:
                # Its cancel was taken by a scheduler that is gone: it ends here, not rendered again.
                self._end_cancelled(record.task_uuid, f"cancelled while {record.status}")
                continue
            try:
                task = self._parse(raw)
            except (TaskValidationError, ValueError, KeyError) as exc:
                self._fail(
                    record.task_uuid,
                    "invalidParameter",
                    f"task {raw.get('taskUUID', '?')} cannot be resumed: its model or parameters are no longer"
                    f" served ({exc})",
                )
                continue
            with self._lock:
                self._tasks[record.task_uuid] = task
            if state is None:
                self._hand_over_again(record, raw)
                continue
            self._follow(record, state, snapshot.seq)
        self._set_queue_depth()

    def _follow(self, record: TaskRecord, state: TaskSnapshot, seq: int) -> None:
        """A task the scheduler holds: apply what its events said while nobody listened."""
        # Still rendering (or ended while nobody listened): apply what the events would have said.
        stored = {r.index: r for r in record.results}
        for result in state.results:
            if (
                result.outcome is not None
                and stored.get(result.index) is not None
                and stored[result.index].status not in _FINISHED
            ):
                self._on_result_outcome(record.task_uuid, result.outcome)
        with self._lock:
            if state.status == "queued":
                self._queued[record.task_uuid] = None
            else:
                self._running.add(record.task_uuid)
        if state.status == "running" and record.status == "queued":
            # It started while no gateway listened: record it as the ``running`` event would have.
            self._on_running(SchedulerEvent(seq=seq, kind="running", task_uuid=record.task_uuid))
        if state.status in ("success", "error") and state.code is None:
            self._finish_task(record.task_uuid)
        elif state.status == "error":
            self._fail(
                record.task_uuid, state.code or "renderFailed", state.message or "failed", parameter=state.parameter
            )
        elif state.status == "cancelled":
            self._end_cancelled(record.task_uuid, state.message or "cancelled")

    def _hand_over_again(self, record: TaskRecord, raw: dict) -> None:
        """A task the scheduler does not hold: its unfinished results are handed over again (its
        recorded ones never render twice: the store is read first); one with none left ends."""
        todo = [r.index for r in record.results if r.status not in _FINISHED]
        if not todo:
            self._finish_task(record.task_uuid)
            return
        for result in record.results:
            if result.status not in _FINISHED:
                self._store.upsert_result(dataclasses.replace(result, status="queued", progress=0.0))
        self._store.update_task_status(record.task_uuid, "queued")
        with self._lock:
            self._running.discard(record.task_uuid)
            self._queued[record.task_uuid] = None
            position = len(self._queued)
        self._started_at[record.task_uuid] = time.perf_counter()
        self._scheduler.hand_over(self._spec(record, raw, todo))
        # Watchers saw it running (or queued before the scheduler restarted): it waits again.
        self._publish(ProgressEvent(task_uuid=record.task_uuid, kind="queued", queue_position=position))

    def _cancel_in_scheduler(self, task_id: str) -> None:
        try:
            self._scheduler.cancel(task_id)
        except Exception:  # asked again at the next resync or event
            log.warning("scheduler did not take the cancel of %s", task_id, exc_info=True)

    def _sweep_partials(self, held: dict[str, Any]) -> None:
        """Delete encoder leftovers (``.<task>-<index>.<ext>.partial-<hex>``) of renders that no
        scheduler holds: a gateway killed with its embedded Ray, or a finisher that died, never
        renames or removes them. A task the scheduler still renders keeps its file."""
        if not self._out_dir.is_dir():
            return
        live = {uuid for uuid, state in held.items() if state.status in ("queued", "running")}
        removed = 0
        for path in self._out_dir.glob(f".*{_PARTIAL_MARK}*"):
            name = path.name[1:].partition(_PARTIAL_MARK)[0]
            if name.rpartition("-")[0] in live:
                continue
            try:
                path.unlink()
                removed += 1
            except OSError as error:
                log.warning("cannot remove the leftover %s: %s", path, error)
        if removed:
            log.info("removed %d unfinished encoder file(s) left in %s", removed, self._out_dir)

    # -- the event pump ------------------------------------------------------------------------

    def _pump(self) -> None:
        while not self._stopping.is_set():
            try:
                batch = self._scheduler.events(self._cursor, _EVENTS_WAIT_S)
            except Exception:  # the scheduler restarts: try again, then resync on its new epoch
                log.warning("scheduler unreachable; retrying", exc_info=True)
                self._stopping.wait(1.0)
                continue
            if batch.resync or batch.epoch != self._epoch:
                log.warning("scheduler epoch changed (%s -> %s): resyncing", self._epoch, batch.epoch)
                try:
                    with self._ending:
                        self._resync()
                except Exception:
                    log.exception("resync failed; retrying")
                    self._stopping.wait(1.0)
                continue
            for event in batch.events:
                self._cursor = event.seq
                try:
                    self._apply(event)
                except Exception:  # one bad event must not stop the pump
                    log.exception("failed to apply %s", event)

    def _apply(self, event: SchedulerEvent) -> None:
        handler = _EVENT_HANDLERS.get(event.kind)
        if handler is not None:
            with self._ending:
                handler(self, event)

    def _on_running(self, event: SchedulerEvent) -> None:
        task_uuid = event.task_uuid
        assert task_uuid is not None
        record = self._store.get_task(task_uuid)
        if record is None or record.status in _FINISHED:
            # Ended here (cancelled) before the scheduler heard, e.g. a hand-over that overtook
            # its cancel: stop it there too.
            self._cancel_in_scheduler(task_uuid)
            return
        with self._lock:
            self._queued.pop(task_uuid, None)
            self._running.add(task_uuid)
        self._store.update_task_status(task_uuid, "running")
        for result in record.results:
            if result.status == "queued":
                self._store.upsert_result(dataclasses.replace(result, status="running", progress=0.0))
        if self._metrics:
            self._metrics.observe_stage("queued", time.time() - record.created_at)
        self._set_queue_depth()
        self._publish(ProgressEvent(task_uuid=task_uuid, kind="running"))

    def _tracker(self, task_uuid: str) -> ProgressTracker | None:
        tracker = self._progress.get(task_uuid)
        task = self._tasks.get(task_uuid)
        if tracker is None and task is not None:
            tracker = self._progress[task_uuid] = ProgressTracker(
                task_uuid, task.num_frames, store=self._store, publish=self._publish, metrics=self._metrics
            )
        return tracker

    def _on_progress(self, event: SchedulerEvent) -> None:
        tracker = self._tracker(event.task_uuid or "")
        if tracker is not None:
            tracker.on_event(event)

    def _on_result(self, event: SchedulerEvent) -> None:
        if event.task_uuid is not None and event.outcome is not None:
            self._on_result_outcome(event.task_uuid, event.outcome)

    def _on_result_outcome(self, task_uuid: str, outcome: ResultOutcome) -> None:
        record = self._store.get_task(task_uuid)
        task = self._tasks.get(task_uuid)
        if record is None or task is None or outcome.status == "cancelled":
            return
        stored = next((r for r in record.results if r.index == outcome.index), None)
        if stored is None or stored.status in _FINISHED:
            return
        if outcome.status == "error":
            self._result_failed(task, stored, outcome)
        else:
            self._result_succeeded(task, record, stored, outcome)

    def _result_failed(self, task: VideoInferenceTask, stored: ResultRecord, outcome: ResultOutcome) -> None:
        """A result that failed on its own (safety, a chunk out of retries): stored, told, hooked."""
        failed = dataclasses.replace(
            stored,
            status="error",
            seed=outcome.seed,
            progress=1.0,
            error_code=outcome.error_code,
            error_message=outcome.error_message,
            error_parameter=outcome.error_parameter,
            webhook_status="pending" if task.webhook_url else stored.webhook_status,
        )
        self._store.upsert_result(failed)
        if self._metrics:
            self._metrics.result_finished("error")
            self._metrics.render_failed(outcome.error_code or "renderFailed")
        self._publish(
            ProgressEvent(
                task_uuid=stored.task_uuid,
                kind="result",
                result_index=outcome.index,
                message=outcome.error_message or "",
                extra=progress_extra(code=outcome.error_code, seed=outcome.seed),
            )
        )
        self._call_hook(task, failed)

    def _result_succeeded(
        self, task: VideoInferenceTask, record: TaskRecord, stored: ResultRecord, outcome: ResultOutcome
    ) -> None:
        """A result whose file is final: into the artifact store (owned by its key), stored, hooked."""
        if self._metrics:
            self._metrics.observe_result(_render_result(task, outcome))
            self._metrics.result_finished("success")
        cost = None
        if task.include_cost:
            gpu_seconds = outcome.model_s * self._gpus + outcome.audio_s * min(self._gpus, 0.25)
            cost = round(gpu_seconds * self._price, 8)
        path = self._store_artifact(task, record, outcome)
        done = dataclasses.replace(
            stored,
            status="success",
            seed=outcome.seed,
            video_uuid=outcome.video_uuid,
            cost=cost,
            progress=1.0,
            extended_prompt=outcome.extended_prompt,
            upload_status="pending" if task.upload_endpoint else stored.upload_status,
            webhook_status="pending" if task.webhook_url else stored.webhook_status,
        )
        self._store.upsert_result(done, path=path)
        extra = progress_extra(
            video_uuid=outcome.video_uuid, seed=outcome.seed, extended_prompt=outcome.extended_prompt
        )
        self._publish(ProgressEvent(task_uuid=stored.task_uuid, kind="result", result_index=outcome.index, extra=extra))
        self._call_hook(task, done)

    def _store_artifact(self, task: VideoInferenceTask, record: TaskRecord, outcome: ResultOutcome) -> Any:
        """Move the file into the artifact store; its path there (or where it stays on failure)."""
        path: Any = outcome.path
        if self._artifacts is None or not outcome.path or not outcome.video_uuid:
            return path
        try:
            # The owner is recorded: a result is a media input for its own key's tasks only.
            artifact = self._artifacts.put(
                outcome.video_uuid,
                Path(outcome.path),
                output_format(task.output_format).content_type,
                task.ttl,
                owner_key=record.api_key,
            )
            return getattr(artifact, "path", path)
        except Exception:  # the file stays where it is; delivery reports the failure
            log.exception("artifact store refused %s", outcome.video_uuid)
            return path

    def _on_failed(self, event: SchedulerEvent) -> None:
        assert event.task_uuid is not None
        self._fail(
            event.task_uuid, event.code or "renderFailed", event.message or "the task failed", parameter=event.parameter
        )

    def _on_cancelled(self, event: SchedulerEvent) -> None:
        assert event.task_uuid is not None
        self._end_cancelled(event.task_uuid, event.message or "cancelled while running")

    def _on_done(self, event: SchedulerEvent) -> None:
        assert event.task_uuid is not None
        started = self._started_at.pop(event.task_uuid, None)
        if started is not None:
            self._task_seconds.append(time.perf_counter() - started)
        self._finish_task(event.task_uuid)

    def _on_positions(self, event: SchedulerEvent) -> None:
        # The changes since the last event (the snapshot of a resync holds the rest).
        with self._lock:
            for task_uuid, position in event.data.items():
                if position is None:
                    self._positions.pop(task_uuid, None)
                else:
                    self._positions[task_uuid] = position

    def _on_stats(self, event: SchedulerEvent) -> None:
        if self._metrics is not None and hasattr(self._metrics, "scheduler_stats"):
            self._metrics.scheduler_stats(event.data)

    # -- ends ----------------------------------------------------------------------------------

    def _forget(self, task_uuid: str) -> None:
        """Drop everything held in memory for an ended task (its parsed body too)."""
        with self._lock:
            self._queued.pop(task_uuid, None)
            self._running.discard(task_uuid)
            self._cancelling.discard(task_uuid)
            self._positions.pop(task_uuid, None)
            self._progress.pop(task_uuid, None)
            self._tasks.pop(task_uuid, None)
        self._started_at.pop(task_uuid, None)
        try:
            self._scheduler.forget(task_uuid)
        except Exception:  # noqa: BLE001 - the scheduler forgets ended tasks on its own past its limit
            pass
        self._set_queue_depth()
        with self._ended:
            self._ended.notify_all()

    def _finish_task(self, task_uuid: str) -> None:
        """End a task whose results all finished: ``success`` if any succeeded, else ``error``."""
        record = self._store.get_task(task_uuid)
        if record is None or record.status in _FINISHED:
            self._forget(task_uuid)
            return
        results = record.results
        failed = [r for r in results if r.status != "success"]
        self._forget(task_uuid)
        if results and len(failed) == len(results):
            self._end(task_uuid, "error", failed[0].error_message or "every result failed")
        else:
            self._end(task_uuid, "success")

    def _end(self, task_uuid: str, status: ResultStatus, error: str | None = None) -> None:
        """Store the task's end; its final Watch event follows unless a delivery is pending (then
        ``update_result`` sends it when the last one settles)."""
        with self._finals:
            self._store.update_task_status(task_uuid, status, error)
            record = self._store.get_task(task_uuid)
            if record is not None and not _pending(record):
                self._publish(self._final_event(record))
        with self._ended:
            self._ended.notify_all()
        if self._metrics:
            self._metrics.task_finished(status)

    def _end_cancelled(self, task_uuid: str, message: str) -> None:
        record = self._store.get_task(task_uuid)
        if record is None or record.status in _FINISHED:
            return
        self._store.update_task_status(task_uuid, "cancelled", message)
        for result in record.results:
            if result.status not in _FINISHED:
                self._store.upsert_result(
                    dataclasses.replace(
                        result, status="cancelled", error_code=TaskCancelledError.code, error_message=message
                    )
                )
                if self._metrics:
                    self._metrics.result_finished("cancelled")
        if self._metrics:
            self._metrics.task_finished("cancelled")
        self._forget(task_uuid)
        self._publish(ProgressEvent(task_uuid=task_uuid, kind="cancelled", message=message))

    def _fail(self, task_uuid: str, code: str, message: str, *, parameter: str | None = None) -> None:
        """Every unfinished result fails with ``code``; the task ends by ``_finish_task``'s rule
        (still ``success`` if a result was delivered before the failure). A ``webhookURL`` hears
        of each failed result."""
        record = self._store.get_task(task_uuid)
        if record is None or record.status in _FINISHED:
            return
        task = self._tasks.get(task_uuid)
        for result in record.results:
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
        if any(r.status == "success" for r in record.results):
            self._finish_task(task_uuid)
            return
        self._forget(task_uuid)
        self._end(task_uuid, "error", message)

    def _call_hook(self, task: VideoInferenceTask, record: ResultRecord) -> None:
        if self._result_hook is None:
            return
        started = time.perf_counter()
        try:
            updated = self._result_hook(record, task)
            if isinstance(updated, ResultRecord):
                self._store.upsert_result(updated)
        except Exception:  # one failed delivery must not stop the farm
            log.exception("on_result failed for %s result %d", record.task_uuid, record.index)
        if self._metrics:
            self._metrics.observe_stage("deliver", time.perf_counter() - started)

    # -- helpers -------------------------------------------------------------------------------

    def _parse(self, raw: dict) -> VideoInferenceTask:
        if self.known_models is None:
            return parse_task(raw)
        return parse_task(raw, known_models=self.known_models)

    def _store_inline_media(self, raw: dict, api_key: str | None) -> dict:
        """``raw`` with its inline media moved to the asset directory (as ``api_key``'s assets),
        every asset it names marked used now (``expire_assets`` counts from the last use)."""
        if self._media.assets_dir is None or not isinstance(raw.get("inputs"), dict):
            return raw
        from farm.io.media import asset_references, store_inline_media, touch_assets

        try:
            with self._assets:
                stored = store_inline_media(raw, assets_dir=self._media.assets_dir, api_key=api_key)
                touch_assets(self._media.assets_dir, asset_references(stored))
            return stored
        except OSError as error:  # a full or failing disk: the client may retry; the log says why
            log.error("cannot store the inline media of task %s: %s", raw.get("taskUUID"), error)
            raise UnavailableError("the task's inline media cannot be stored now; retry later") from None

    def _resolve(self, task_uuid: str, api_key: str | None) -> tuple[TaskRecord | None, str]:
        """``api_key``'s task ``task_uuid``, if stored, and the store's id for it (where it is, or
        where a new one goes): the UUID itself unless another key holds it, then a scoped id."""
        task_id, free = task_uuid, None
        cached = self._store.cached_task(task_uuid)
        if cached is not None and (cached.api_key is None or cached.api_key == api_key):
            return cached, task_uuid  # what the walk below finds first, without a statement
        if not self._store.stored_ids([task_uuid, _scoped_id(api_key, task_uuid)]):
            return None, task_uuid  # a new task (one statement instead of the walk below)
        for _ in range(_MAX_SCOPES):
            record = self._store.get_task(task_id)
            if record is None:
                if free is not None:
                    return None, free
                # A scoped id was made while this id was another key's task, which may have been
                # pruned since: look one further before calling the task new.
                free = task_id
            elif record.api_key is None or record.api_key == api_key:
                # A task submitted while keys were off belongs to every caller, as before.
                return record, task_id
            task_id = _scoped_id(api_key, task_id)
        return None, free or task_id

    def _visible(self, task_uuid: str, api_key: str | None) -> TaskRecord:
        record, _ = self._resolve(task_uuid, api_key)
        # The same "not found" for absent and foreign tasks reveals nothing about other clients' UUIDs.
        if record is None:
            raise TaskNotFoundError(f"task {task_uuid} not found")
        return record

    @staticmethod
    def _public(record: TaskRecord, client_uuid: str) -> TaskRecord:
        """``record`` as its client knows it: under the UUID it submitted (not a scoped id)."""
        if record.task_uuid == client_uuid:
            return record
        results = tuple(dataclasses.replace(r, task_uuid=client_uuid) for r in record.results)
        return dataclasses.replace(record, task_uuid=client_uuid, results=results)

    @staticmethod
    def _as_client(event: ProgressEvent, client_uuid: str) -> ProgressEvent:
        return event if event.task_uuid == client_uuid else dataclasses.replace(event, task_uuid=client_uuid)

    def _ended_in_store(self, task_id: str) -> bool:
        record = self._store.get_task(task_id)
        return record is None or record.status in _FINISHED

    def _with_position(self, record: TaskRecord) -> TaskRecord:
        """``record`` with its 1-based queue position while queued."""
        if record.status != "queued":
            return record
        with self._lock:
            position = self._positions.get(record.task_uuid)
            if position is None and record.task_uuid in self._queued:
                position = len(self._queued)  # not placed by the scheduler yet: at the back
        return dataclasses.replace(record, queue_position=position)

    def _resubmitted(self, existing: TaskRecord, digest: str, client_uuid: str) -> TaskRecord:
        """The answer to a second submit of a stored task: the task if identical, else a refusal.
        Compared on the digest of the body as first sent (the stored body names assets instead
        of inline media)."""
        if self._store.get_digest(existing.task_uuid) != digest:
            raise DuplicateTaskError(f"taskUUID {client_uuid} was already submitted with a different body")
        return self._public(self._with_position(existing), client_uuid)

    def _retry_after(self) -> float:
        if not self._task_seconds:
            return _DEFAULT_RETRY_AFTER_S
        return round(sum(self._task_seconds) / len(self._task_seconds), 1)

    def _set_queue_depth(self) -> None:
        if self._metrics:
            self._metrics.set_queue_depth(len(self._queued))

    def _final_event(self, record: TaskRecord) -> ProgressEvent:
        """The last Watch event of an ended task, from its record: ``done`` with result counts,
        ``error`` with the code (and field) of the failure, or ``cancelled``."""
        task_uuid = record.task_uuid
        if record.status == "success":
            failed = sum(r.status != "success" for r in record.results)
            return ProgressEvent(
                task_uuid=task_uuid,
                kind="done",
                extra={"succeeded": len(record.results) - failed, "failed": failed},
            )
        message = self._store.get_error(task_uuid) or ""
        if record.status == "cancelled":
            return ProgressEvent(task_uuid=task_uuid, kind="cancelled", message=message)
        errors = [r for r in record.results if r.status == "error"]
        # The task-level failure if one failed it, else the first result's own.
        first = next((r for r in errors if r.error_message == message), errors[0] if errors else None)
        extra = progress_extra(
            code=(first.error_code if first else None) or "renderFailed",
            parameter=first.error_parameter if first else None,
        )
        text = message or (first.error_message if first else None) or "the task failed"
        return ProgressEvent(task_uuid=task_uuid, kind="error", message=text, extra=extra)

    def _state_event(self, record: TaskRecord) -> ProgressEvent:
        """The first event of ``watch``: where the task stands now. An ended task whose delivery
        is still pending is not over for a watcher: ``delivered`` and its final event follow."""
        if record.status in _FINISHED:
            if record.status != "cancelled" and _pending(record):
                return ProgressEvent(task_uuid=record.task_uuid, kind="running", message="delivering results")
            return self._final_event(record)
        return ProgressEvent(
            task_uuid=record.task_uuid,
            kind="queued" if record.status == "queued" else "running",
            queue_position=record.queue_position,
        )

    def _publish(self, event: ProgressEvent) -> None:
        """Hand ``event`` to every watcher of its task, in each watcher's own event loop."""
        if event.task_uuid not in self._subscribers:
            return
        with self._lock:
            subscribers = list(self._subscribers.get(event.task_uuid, ()))
        for loop, inbox in subscribers:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, event)
            except RuntimeError:  # the watcher's loop is closed; its finally clause cleans up
                pass


_EVENT_HANDLERS: dict[str, Callable[[TaskManager, SchedulerEvent], None]] = {
    "running": TaskManager._on_running,
    "chunk": TaskManager._on_progress,
    "denoise": TaskManager._on_progress,
    "encode": TaskManager._on_progress,
    "result": TaskManager._on_result,
    "failed": TaskManager._on_failed,
    "cancelled": TaskManager._on_cancelled,
    "done": TaskManager._on_done,
    "positions": TaskManager._on_positions,
    "stats": TaskManager._on_stats,
}


def _render_result(task: VideoInferenceTask, outcome: ResultOutcome) -> RenderResult:
    """A successful outcome as the metrics' ``RenderResult``."""
    return RenderResult(
        index=outcome.index,
        seed=outcome.seed,
        video_uuid=outcome.video_uuid or "",
        path=Path(outcome.path) if outcome.path else None,
        output_format=task.output_format,
        num_frames=outcome.num_frames,
        width=outcome.width,
        height=outcome.height,
        fps=32,
        has_audio=outcome.has_audio,
        chunks=outcome.chunks,
        timings=ResultTimings(
            model_s=outcome.model_s,
            audio_s=outcome.audio_s,
            encode_s=outcome.encode_s,
            wall_s=outcome.wall_s,
            activity=outcome.activity,
        ),
        extended_prompt=outcome.extended_prompt,
    )
