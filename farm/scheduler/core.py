"""The scheduler: the one place that decides which unit of work runs on which worker.

Every admitted task is cut into units (its prompt encode, the chunks of each result, each result's
audio) that wait in one ``WorkQueue`` with the units of every other task. The loop, shaped like
vLLM's ``EngineCore.step``::

    def step(self, timeout):
        self._scale_pools()             # grow pools while units wait, shrink idle ones
        self._dispatch()                # schedule: every free worker gets the next unit
        for outcome in self.executor.poll(timeout, ...):   # run
            self._handle(outcome)       # update: one handler per outcome

A new task starts on the first free worker: it never waits for another task's tail. Handlers, one
per outcome: a worker ready or lost, inputs prepared, a prompt encoded, a chunk done (or flagged by
the safety checker), audio done, a unit failed, frames encoded, a result's file final, denoising
steps reported; plus ``cancel``. Each is plain Python over an ``Executor`` (``farm.render.executor``),
so the rules are tested with a fake executor and no Ray.

Results of a task are independent: one refused by the safety checker or failing for good ends on
its own while the others go on. A unit that fails is retried (``max_attempts``) on another worker;
a worker whose units fail ``retire_after_failures`` times in a row is retired and replaced.

Thread safety: ``hand_over``, ``cancel``, ``events``, ``snapshot`` and ``forget`` may be called
from any thread; they take the core's lock, which ``step`` holds except while it waits in ``poll``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, cast

from farm.domain.constants import OUTPUT_FPS, output_format
from farm.domain.errors import (
    FarmError,
    RenderError,
    SafetyError,
    TaskCancelledError,
    TaskValidationError,
    Violation,
    WorkerLostError,
    error_info,
)
from farm.domain.planner import ChunkPlan, ClipPlan, plan_clip
from farm.domain.task import VideoInferenceTask
from farm.domain.validation import parse_task
from farm.render.executor import (
    AudioDone,
    ChunkDone,
    Encoded,
    Executor,
    Finished,
    FinishSpec,
    Outcome,
    PoolSpec,
    Prepared,
    PreparedInputs,
    PromptDone,
    StepReport,
    UnitFailed,
    WorkerFailed,
    WorkerReady,
)
from farm.scheduler.events import (
    EventBatch,
    EventKind,
    ResultOutcome,
    ResultSnapshot,
    SchedulerEvent,
    Snapshot,
    TaskSnapshot,
    TaskSpec,
)
from farm.scheduler.pools import PoolPolicy, PoolState
from farm.scheduler.queue import TenantPolicy, Unit, UnitKind, WorkQueue
from farm.workers.messages import AudioWork, ChunkWork, PromptWork, wire_format_for

if TYPE_CHECKING:
    from models.base import ModelProfile

log = logging.getLogger(__name__)

Status = Literal["queued", "running", "success", "error", "cancelled"]


@dataclass(frozen=True, kw_only=True)
class SchedulerConfig:
    """How the scheduler shares the workers. Every field has a safe default for a laptop."""

    #: Weight and concurrency limit per API key; keys not listed get ``default_tenant``.
    tenants: Mapping[str | None, TenantPolicy] = field(default_factory=dict)
    default_tenant: TenantPolicy = field(default_factory=TenantPolicy)
    #: Video pool size per model id; models not listed get ``default_pool``.
    pools: Mapping[str, PoolPolicy] = field(default_factory=dict)
    default_pool: PoolPolicy = field(default_factory=PoolPolicy)
    #: The audio pool of each model (its worker starts only when a result wants audio).
    audio_pool: PoolPolicy = field(default_factory=lambda: PoolPolicy(min_workers=0, max_workers=1))
    #: What each video worker asks Ray for.
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    worker_resources: Mapping[str, float] = field(default_factory=dict)
    torch_threads: int | None = 1
    #: Dispatches of one unit before its result fails (a lost worker counts too).
    max_attempts: int = 3
    #: A worker whose units fail this many times in a row is retired and replaced.
    retire_after_failures: int = 3
    #: Workers a pool replaces over its life after deaths or retirements; then units fail.
    max_replacements: int = 64
    blend: str = "cosine"
    #: Events kept for readers that fall behind (a restarted gateway reads from its cursor).
    event_log: int = 50_000
    #: Ended tasks kept for ``snapshot`` until ``forget``; the oldest go first past this.
    keep_ended: int = 10_000
    #: How often pool statistics are published as a ``stats`` event.
    stats_interval_s: float = 2.0
    #: Queue positions are published at most this often (a ``positions`` event holds only the
    #: positions that changed since the last one): a burst of submissions costs one event, not
    #: one per task, and no event carries the whole queue twice a step.
    positions_interval_s: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.retire_after_failures < 1:
            raise ValueError(f"retire_after_failures must be >= 1, got {self.retire_after_failures}")
        if self.gpus_per_worker < 0 or self.cpus_per_worker < 0:
            raise ValueError(
                f"resources must be >= 0, got gpus_per_worker={self.gpus_per_worker}, "
                f"cpus_per_worker={self.cpus_per_worker}"
            )

    def pool_policy(self, model_id: str) -> PoolPolicy:
        return self.pools.get(model_id, self.default_pool)


@dataclass(kw_only=True)
class _Result:
    index: int
    seed: int
    video_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = "queued"  # queued, running, finishing, success, error, cancelled
    chunks_done: set[int] = field(default_factory=set)
    wants_audio: bool = False
    audio_done: bool = False
    opened: bool = False
    model_s: float = 0.0
    audio_s: float = 0.0
    activity: list[tuple[float, float]] = field(default_factory=list)
    steps: dict[int, int] = field(default_factory=dict)
    steps_emitted: int = -1
    outcome: ResultOutcome | None = None
    #: The exception it failed with (in-process callers re-raise it).
    error: BaseException | None = None

    @property
    def ended(self) -> bool:
        return self.status in ("success", "error", "cancelled")


@dataclass(kw_only=True)
class _Task:
    spec: TaskSpec
    task: VideoInferenceTask
    profile: Any
    seq: int
    token: str
    results: dict[int, _Result]
    status: str = "preparing"  # preparing, queued, running, ended
    ended_as: str | None = None  # success, error, cancelled
    prepared: PreparedInputs | None = None
    plan: ClipPlan | None = None
    native: tuple[int, int] = (0, 0)
    sequential: bool = False
    #: ``chunkMode: codenoise``: the result's windows are denoised in lockstep by a gang of workers.
    codenoise: bool = False
    safety_mode: str = "none"
    prompt: Any = None
    extended: str | None = None
    in_flight: set[int] = field(default_factory=set)  # id(unit)
    cancelling: bool = False
    chunk_renders: int = 0
    started: float = field(default_factory=time.perf_counter)
    code: str | None = None
    message: str | None = None
    parameter: str | None = None
    error: BaseException | None = None
    #: ``_demand``'s share of this task while its prompt is not encoded: (planned?, pools and units).
    demand_share: tuple[bool, tuple[tuple[str, int], ...]] | None = None

    @property
    def tenant(self) -> str | None:
        return self.spec.api_key

    @property
    def pool(self) -> str:
        return f"video:{self.task.model}"


@functools.lru_cache(maxsize=256)
def _clip_plan(codenoise: bool, frames: int, window: int, overlap: int, stride: int, blend: str) -> ClipPlan:
    """A result's plan, computed once per shape (tasks of a busy farm share a few durations and
    profiles); plans are read, never changed. A ``PlanError`` is raised again each time."""
    if codenoise:
        from farm.render.codenoise import plan_windows

        return plan_windows(
            frames,
            window_frames=window,
            overlap_frames=overlap,
            temporal_stride=stride,
            blend=blend,  # type: ignore[arg-type]  # checked by the planner
        )
    return plan_clip(
        frames,
        window_frames=window,
        overlap_frames=overlap,
        temporal_stride=stride,
        blend=blend,  # type: ignore[arg-type]  # checked by plan_clip
    )


class SchedulerCore:
    """Admits tasks, keeps every worker busy with the next unit by fair share, reports events.

    ``profiles`` maps a model id to its ``ModelProfile`` (built by the CLI or the gateway and
    passed in). ``executor`` runs the decisions. ``clock`` is ``time.monotonic`` except in tests.
    """

    def __init__(
        self,
        executor: Executor,
        profiles: Mapping[str, ModelProfile],
        config: SchedulerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.executor = executor
        self.config = config or SchedulerConfig()
        self._profiles = dict(profiles)
        self._clock = clock
        self.epoch = str(uuid.uuid4())
        self._lock = threading.RLock()
        self._queue = WorkQueue(self.config.tenants, self.config.default_tenant)
        self._tasks: dict[str, _Task] = {}
        self._ended: collections.deque[str] = collections.deque()
        self._pools: dict[str, PoolState] = {}
        self._worker_pool: dict[str, str] = {}
        #: worker id -> the unit it runs
        self._running: dict[str, Unit] = {}
        self._seq = itertools.count()
        self._events: collections.deque[SchedulerEvent] = collections.deque(maxlen=self.config.event_log)
        self._event_seq = 0
        self._new_event = threading.Condition(self._lock)
        self._positions_dirty = False
        #: Positions as last published: the next ``positions`` event carries what differs.
        self._published_positions: dict[str, int] = {}
        self._last_positions = float("-inf")
        self._positions_backoff = 0.0
        self._last_stats = 0.0
        #: Scheduling latency (unit ready -> dispatched) and per-dispatch overhead, for metrics.
        self.latencies: collections.deque[float] = collections.deque(maxlen=10_000)
        self.dispatch_seconds = 0.0
        self.dispatches = 0
        #: Seconds the loop spent deciding and handling (everything but waiting in ``poll``).
        self.loop_seconds = 0.0
        #: Chunk dispatches per task (retries included), kept after ``forget`` for the last tasks:
        #: how a test proves that no finished chunk was rendered again.
        self._renders: collections.OrderedDict[str, int] = collections.OrderedDict()

    # == the public surface (any thread) ======================================================

    def hand_over(self, spec: TaskSpec) -> bool:
        """Take over ``spec``'s render; False if the task is already here (a repeated hand-over)."""
        return self.hand_over_many([spec])[0]

    def hand_over_many(self, specs: list[TaskSpec]) -> list[bool]:
        """``hand_over`` of each spec in order, under one lock (a gateway sends them in batches)."""
        taken = []
        with self._lock:
            for spec in specs:
                new = spec.task_uuid not in self._tasks
                if new:
                    self._admit(spec)
                taken.append(new)
        return taken

    def cancel(self, task_uuid: str) -> bool:
        """Stop a task: queued units are dropped, running ones stop at their next step."""
        with self._lock:
            task = self._tasks.get(task_uuid)
            if task is None or task.status == "ended":
                return False
            self._on_cancel(task)
            return True

    def forget(self, task_uuid: str) -> None:
        """Drop an ended task's state (the gateway has stored everything of it)."""
        with self._lock:
            task = self._tasks.get(task_uuid)
            # One with units still stopping stays until they return (its cancel token is cleared
            # then); ``keep_ended`` drops it later.
            if task is not None and task.status == "ended" and not task.in_flight:
                del self._tasks[task_uuid]

    def set_profiles(self, profiles: Mapping[str, ModelProfile]) -> None:
        """Replace the model registry (a gateway started with other profiles)."""
        with self._lock:
            self._profiles = dict(profiles)

    def events(self, after: int, timeout: float = 0.0, limit: int = 1000) -> EventBatch:
        """Events with ``seq > after`` (waiting up to ``timeout`` for the first)."""
        deadline = time.monotonic() + timeout
        with self._new_event:
            while self._event_seq <= after and timeout > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._new_event.wait(left)
            first = self._events[0].seq if self._events else self._event_seq + 1
            if after + 1 < first and self._event_seq > after:
                return EventBatch(epoch=self.epoch, resync=True)
            start = max(0, after + 1 - first)
            picked = list(itertools.islice(self._events, start, start + limit))
            return EventBatch(epoch=self.epoch, events=tuple(picked))

    def snapshot(self) -> Snapshot:
        """Every task held (running or ended and not forgotten), current to ``seq``."""
        with self._lock:
            # Publish first: a reader that starts from this snapshot then applies the position
            # changes after ``seq`` on top of exactly these positions.
            self._publish_positions()
            positions = self._published_positions
            tasks = tuple(self._task_snapshot(t, positions.get(t.spec.task_uuid)) for t in self._tasks.values())
            return Snapshot(epoch=self.epoch, seq=self._event_seq, tasks=tasks)

    def pending_work(self) -> bool:
        """Whether any task is not ended yet."""
        with self._lock:
            return any(t.status != "ended" for t in self._tasks.values())

    def errors(self, task_uuid: str) -> tuple[BaseException | None, dict[int, BaseException]]:
        """The exceptions a task and its results failed with (in-process callers re-raise them)."""
        with self._lock:
            task = self._tasks[task_uuid]
            return task.error, {i: r.error for i, r in task.results.items() if r.error is not None}

    def chunk_renders(self, task_uuid: str) -> int:
        """How many times a chunk of ``task_uuid`` was dispatched to a worker (retries included)."""
        with self._lock:
            return self._renders.get(task_uuid, 0)

    def ended(self, task_uuid: str) -> str | None:
        """``success``, ``error`` or ``cancelled`` once the task ended, else None."""
        with self._lock:
            task = self._tasks.get(task_uuid)
            return task.ended_as if task is not None and task.status == "ended" else None

    def adopt(self, kind: str, profile: ModelProfile, workers: list[str], *, policy: PoolPolicy | None = None) -> None:
        """Take workers the executor already holds (``RayExecutor.adopt``) into ``kind``'s pool of
        ``profile``; ``WorkerReady`` makes them idle."""
        with self._lock:
            pool = self._ensure_pool(f"{kind}:{profile.model_id}", kind, profile)
            if policy is not None:
                pool.policy = policy
            from farm.scheduler.pools import WorkerState

            for worker in workers:
                pool.workers[worker] = WorkerState(id=worker, since=self._clock(), started=self._clock())
                self._worker_pool[worker] = pool.spec.name

    def workers(self, pool: str) -> list[str]:
        """The live workers of ``pool`` (tests, and the legacy ``WorkerPool``)."""
        with self._lock:
            state = self._pools.get(pool)
            return list(state.workers) if state is not None else []

    # == the loop =============================================================================

    def step(self, timeout: float = 0.1) -> None:
        """One round: scale the pools, dispatch to free workers, wait for and handle outcomes."""
        started = time.perf_counter()
        with self._lock:
            self._scale_pools()
            self._dispatch()
            tokens = [t.token for t in self._tasks.values() if t.in_flight]
            self._maybe_publish()
        self.loop_seconds += time.perf_counter() - started
        outcomes = self.executor.poll(timeout, tokens)
        started = time.perf_counter()
        with self._lock:
            for outcome in outcomes:
                try:
                    self._handle(outcome)
                except Exception:  # one bad outcome must not stop the farm
                    log.exception("scheduler failed to handle %r", outcome)
            self._dispatch()
            self._maybe_publish()
        self.loop_seconds += time.perf_counter() - started

    def run_until(self, done: Callable[[], bool], timeout: float = 0.05) -> None:
        """Step until ``done()`` (in-process renders)."""
        while not done():
            self.step(timeout)

    # == admission ============================================================================

    def _admit(self, spec: TaskSpec) -> None:
        try:
            profiles = self._profiles
            if spec.parsed is not None:
                parsed = spec.parsed
            else:
                parsed = parse_task(spec.body, known_models=tuple(profiles)) if profiles else parse_task(spec.body)
            profile = profiles[parsed.model]
        except TaskValidationError as exc:
            self._fail_spec(spec, exc)
            return
        except KeyError:
            self._fail_spec(spec, RenderError(f"model {spec.body.get('model')!r} is not served by this farm"))
            return
        results = {i: _Result(index=i, seed=spec.seeds[i]) for i in spec.results}
        task = _Task(
            spec=spec,
            task=parsed,
            profile=profile,
            seq=next(self._seq),
            token=f"{spec.task_uuid}/{uuid.uuid4()}",
            results=results,
        )
        self._tasks[spec.task_uuid] = task
        if not results:
            self._end_task(task)
            return
        self._ensure_pool(task.pool, "video", profile)
        if _has_inputs(task.task):
            # Fetch and decode off the GPUs, before the task takes any render capacity.
            self.executor.prepare(task.task, profile, spec.media)
        else:
            self._on_prepared(task, PreparedInputs(width=task.task.width, height=task.task.height))
        self._positions_dirty = True

    def _fail_spec(self, spec: TaskSpec, error: BaseException) -> None:
        """A hand-over that cannot even be parsed: report it as a failed task."""
        task = _Task(spec=spec, task=None, profile=None, seq=next(self._seq), token="", results={})  # type: ignore[arg-type]  # never rendered
        self._tasks[spec.task_uuid] = task
        self._fail_task(task, error)

    def _on_prepared(self, task: _Task, prepared: PreparedInputs) -> None:
        """Inputs are decoded: plan the clip, check the profile can take it, queue the prompt."""
        profile, spec = task.profile, task.task
        if (prepared.width, prepared.height) != (spec.width, spec.height):
            spec = task.task = dataclasses.replace(spec, width=prepared.width, height=prepared.height)
        task.prepared = prepared
        task.native = profile.native_size(spec.width, spec.height)
        mode = spec.settings.chunk_mode or getattr(profile, "chunk_mode", None) or "parallel"
        task.sequential = mode == "sequential"
        task.codenoise = mode == "codenoise"
        task.safety_mode = _safety_mode(spec)
        try:
            self._check_profile(task)
            task.plan = self._plan(task, prepared.lead_frames)
        except FarmError as exc:
            self._fail_task(task, exc)
            return
        carried = prepared.carried_audio
        for result in task.results.values():
            result.wants_audio = spec.settings.audio and profile.audio_factory is not None and not carried
        task.status = "queued"
        # A prompt encode is a small fraction of a chunk's GPU time.
        self._push(task, self._unit(task, "prompt", cost=_chunk_cost(task) * PROMPT_COST_SHARE))
        self._ensure_pool(task.pool, "video", profile)

    def _plan(self, task: _Task, lead_frames: int) -> ClipPlan:
        """The result's cut: overlapping chunks, or balanced co-denoising windows."""
        profile = task.profile
        return _clip_plan(
            task.codenoise,
            task.task.num_frames + lead_frames,
            profile.window_frames,
            profile.overlap_frames,
            profile.temporal_stride,
            self.config.blend,
        )

    def _check_profile(self, task: _Task) -> None:
        spec, profile, prepared = task.task, task.profile, task.prepared
        assert prepared is not None
        if (prepared.conditioned or task.sequential) and not getattr(profile, "takes_conditioning", False):
            inputs = spec.inputs
            name = (
                "inputs.frameImages"
                if inputs.frame_images
                else "inputs.referenceImages"
                if inputs.reference_images
                else "inputs.referenceVideos"
                if inputs.reference_videos
                else "settings.chunkMode"
            )
            what = "sequential chunks" if name == "settings.chunkMode" else "media inputs"
            raise TaskValidationError(
                [
                    Violation(
                        field=name,
                        message=f"model {spec.model} renders text-to-video only and cannot take {what}; "
                        "use a profile with a conditioning pipeline (WanVACEPipeline)",
                    )
                ],
                task_uuid=spec.task_uuid,
            )
        if task.codenoise and (getattr(profile, "extra", None) or {}).get("speed", {}).get("first_block_cache"):
            # Co-denoised windows would share one step cache (models.wan_stepped names it per guidance
            # branch only): their predictions would leak into each other.
            raise TaskValidationError(
                [
                    Violation(
                        field="settings.chunkMode",
                        message=f"codenoise cannot be used with model {spec.model}: its profile enables "
                        "speed.first_block_cache; use parallel or sequential",
                    )
                ],
                task_uuid=spec.task_uuid,
            )
        if task.safety_mode != "none" and profile.safety_factory is None:
            raise TaskValidationError(
                [
                    Violation(
                        field="safety.checkContent", message=f"model {spec.model} has no safety checker configured"
                    )
                ],
                task_uuid=spec.task_uuid,
            )
        if spec.settings.audio and profile.audio_factory is None and not prepared.carried_audio:
            raise RenderError(f"profile {profile.model_id!r} has no audio backend but settings.audio is true")

    # == dispatch =============================================================================

    @staticmethod
    def _unit(task: _Task, kind: UnitKind, *, pool: str | None = None, **fields: Any) -> Unit:
        """A unit of ``task`` (its key, pool, age and priority) of ``kind``."""
        return Unit(
            task_uuid=task.spec.task_uuid,
            tenant=task.tenant,
            pool=pool or task.pool,
            seq=task.seq,
            kind=kind,
            priority=task.spec.priority,
            **fields,
        )

    def _push(self, task: _Task, unit: Unit) -> None:
        unit.ready_at = self._clock()  # type: ignore[attr-defined]  # scheduling latency
        self._queue.push(unit)

    def _dispatch(self) -> None:
        """Every free worker gets the next unit of its pool (fair share, priority, age)."""
        for name, pool in self._pools.items():
            idle = pool.idle()
            parked: list[Unit] = []
            while idle:
                started = time.perf_counter()
                unit = self._queue.pop(name, free=len(idle))
                if unit is None:
                    break
                if unit.kind == "codenoise":
                    gang, idle = idle[: unit.gang], idle[unit.gang :]
                    self._launch_gang(unit, gang, pool)
                    self.dispatch_seconds += time.perf_counter() - started
                    self.dispatches += 1
                    continue
                worker = _pick_worker(unit, idle, pool)
                if worker is None:
                    parked.append(unit)  # a retry waits for a worker it has not failed on
                    continue
                idle.remove(worker)
                self._launch(unit, worker, pool)
                self.dispatch_seconds += time.perf_counter() - started
                self.dispatches += 1
            for unit in parked:
                self._queue.unpop(unit)

    def _launch(self, unit: Unit, worker: str, pool: PoolState) -> None:
        """Mark ``worker`` busy with ``unit`` and hand it to the executor (one launcher per kind)."""
        task = self._tasks[unit.task_uuid]
        now = self._clock()
        self.latencies.append(now - getattr(unit, "ready_at", now))
        pool.set_status(worker, "busy", now)
        self._running[worker] = unit
        task.in_flight.add(id(unit))
        unit.attempts += 1
        if task.status == "queued":
            task.status = "running"
            self._positions_dirty = True
            self._emit("running", task.spec.task_uuid)
        _LAUNCHERS[unit.kind](self, task, unit, worker)

    def _launch_gang(self, unit: Unit, workers: list[str], pool: PoolState) -> None:
        """A co-denoised result on ``workers`` at once (``farm.render.codenoise``)."""
        task = self._tasks[unit.task_uuid]
        now = self._clock()
        self.latencies.append(now - getattr(unit, "ready_at", now))
        for worker in workers:
            pool.set_status(worker, "busy", now)
            self._running[worker] = unit
        task.in_flight.add(id(unit))
        unit.attempts += 1
        plan, result = task.plan, task.results[unit.result_index]
        assert plan is not None
        unit.payload = {"workers": list(workers), "pending": set(range(len(plan.chunks)))}
        if task.status == "queued":
            task.status = "running"
            self._positions_dirty = True
            self._emit("running", task.spec.task_uuid)
        if result.status == "queued":
            result.status = "running"
        for _ in plan.chunks:
            self._count_render(task)
        from farm.workers.messages import CodenoiseWork

        work = CodenoiseWork(
            task_uuid=task.spec.task_uuid,
            result_index=result.index,
            windows=plan.chunks,
            fusion_weights=plan.fusion_weights,  # type: ignore[attr-defined]  # a CodenoisePlan
            seed=result.seed,
            width=task.native[0],
            height=task.native[1],
            num_inference_steps=task.profile.num_inference_steps,
            guidance_scale=task.profile.guidance_scale,
            cancel_token=task.token,
            safety_mode=task.safety_mode,
            wire_format=wire_format_for(task.task.output_format),
        )
        conditioning = task.prepared.conditioning if task.prepared is not None else None
        self.executor.render_codenoise(unit, list(workers), work, task.prompt, conditioning)

    def _release_gang(self, unit: Unit, *, lost: str | None = None) -> None:
        """Every worker of a gang unit is free again (but ``lost``, which died)."""
        workers = unit.payload["workers"] if isinstance(unit.payload, dict) else []
        for worker in workers:
            if worker == lost:
                self._running.pop(worker, None)
                self._remove_worker(worker, stop=False)
                continue
            self._running.pop(worker, None)
            pool = self._pools.get(self._worker_pool.get(worker, ""))
            if pool is not None and worker in pool.workers:
                pool.set_status(worker, "idle", self._clock())
        self._queue.done(unit)
        task = self._tasks.get(unit.task_uuid)
        if task is not None:
            task.in_flight.discard(id(unit))
            if not task.in_flight:
                self._no_unit_in_flight(task)

    def _launch_prompt(self, task: _Task, unit: Unit, worker: str) -> None:
        spec = task.task
        extend = None
        if spec.settings.prompt_extend and task.profile.prompt_extender_factory is not None:
            extend = min(r.seed for r in task.results.values())
        self.executor.encode_prompt(
            unit, worker, PromptWork(task_uuid=spec.task_uuid, prompt=spec.positive_prompt, extend_seed=extend)
        )

    def _launch_chunk(self, task: _Task, unit: Unit, worker: str) -> None:
        chunk: ChunkPlan = unit.payload[0]  # type: ignore[index]  # (ChunkPlan, tail or None)
        tail: tuple[int, Any] | None = unit.payload[1]  # type: ignore[index]  # (first frame, frames)
        result = task.results[unit.result_index]
        if result.status == "queued":
            result.status = "running"
        self._count_render(task)
        work = ChunkWork(
            task_uuid=task.spec.task_uuid,
            result_index=unit.result_index,
            chunk=chunk,
            seed=result.seed,
            width=task.native[0],
            height=task.native[1],
            num_inference_steps=task.profile.num_inference_steps,
            guidance_scale=task.profile.guidance_scale,
            cancel_token=task.token,
            safety_mode=task.safety_mode,
            tail_start=tail[0] if tail is not None else None,
            # yuv420p planes (half of RGB24) unless RGB is needed: MOV's 4:2:2, sequential tails.
            wire_format=wire_format_for(task.task.output_format, sequential=task.sequential),
        )
        conditioning = task.prepared.conditioning if task.prepared is not None else None
        self.executor.render_chunk(unit, worker, work, task.prompt, conditioning, tail[1] if tail is not None else None)

    def _launch_audio(self, task: _Task, unit: Unit, worker: str) -> None:
        spec = task.task
        work = AudioWork(
            task_uuid=spec.task_uuid,
            result_index=unit.result_index,
            prompt=spec.positive_prompt,
            duration_s=spec.num_frames / OUTPUT_FPS,
            seed=task.results[unit.result_index].seed,
            num_inference_steps=task.profile.audio_steps,
            cancel_token=task.token,
        )
        conditioning = task.prepared.conditioning if task.prepared is not None else None
        self.executor.render_audio(unit, worker, work, conditioning)

    def _count_render(self, task: _Task) -> None:
        """One more chunk dispatch for ``task`` (kept past ``forget`` for the last tasks)."""
        task.chunk_renders += 1
        task_uuid = task.spec.task_uuid
        self._renders[task_uuid] = self._renders.get(task_uuid, 0) + 1
        self._renders.move_to_end(task_uuid)
        if len(self._renders) > self.config.keep_ended:
            self._renders.popitem(last=False)

    def _release(self, worker: str, unit: Unit, *, ok: bool) -> None:
        """The unit left ``worker`` (which stays in its pool unless it died)."""
        self._running.pop(worker, None)
        self._queue.done(unit)
        task = self._tasks.get(unit.task_uuid)
        if task is not None:
            task.in_flight.discard(id(unit))
        pool = self._pools.get(self._worker_pool.get(worker, ""))
        if pool is not None and worker in pool.workers:
            state = pool.workers[worker]
            state.failures = 0 if ok else state.failures + 1
            pool.set_status(worker, "idle", self._clock())
            if state.failures >= self.config.retire_after_failures:
                log.warning(
                    "retiring worker %s of %s after %d failures in a row", worker, pool.spec.name, state.failures
                )
                self._remove_worker(worker, stop=True)
        if task is not None and not task.in_flight:
            self._no_unit_in_flight(task)

    def _no_unit_in_flight(self, task: _Task) -> None:
        """The last unit of ``task`` came back: a cancelled task ends now, and an ended one's cancel
        token (set to stop the units that were still running) is forgotten."""
        if task.cancelling:
            self._end_cancelled(task)
        elif task.status == "ended" and task.token:
            self.executor.forget_token(task.token)

    # == pools ================================================================================

    def _ensure_pool(self, name: str, kind: str, profile: ModelProfile) -> PoolState:
        pool = self._pools.get(name)
        if pool is None:
            cfg = self.config
            if kind == "video":
                spec = PoolSpec(
                    name=name,
                    kind="video",
                    profile=profile,
                    gpus=cfg.gpus_per_worker,
                    cpus=cfg.cpus_per_worker,
                    resources=dict(cfg.worker_resources),
                    torch_threads=cfg.torch_threads,
                )
                policy = cfg.pool_policy(profile.model_id)
            else:
                # Audio models are small next to video ones: the audio actor shares a GPU.
                spec = PoolSpec(
                    name=name,
                    kind="audio",
                    profile=profile,
                    gpus=min(cfg.gpus_per_worker, 0.25),
                    cpus=cfg.cpus_per_worker,
                    torch_threads=cfg.torch_threads,
                )
                policy = cfg.audio_pool
            pool = self._pools[name] = PoolState(spec=spec, policy=policy)
        return pool

    def warm_up(self, model_ids: list[str] | None = None) -> None:
        """Start every video pool's ``min_workers`` now, so the first task never waits for loading."""
        with self._lock:
            for model_id in model_ids if model_ids is not None else list(self._profiles):
                profile = self._profiles[model_id]
                self._ensure_pool(f"video:{model_id}", "video", profile)
            self._scale_pools()

    def _start_worker(self, pool: PoolState) -> None:
        worker = self.executor.start_worker(pool.spec)
        from farm.scheduler.pools import WorkerState

        pool.workers[worker] = WorkerState(id=worker, since=self._clock(), started=self._clock())
        self._worker_pool[worker] = pool.spec.name

    def _remove_worker(self, worker: str, *, stop: bool) -> None:
        pool = self._pools.get(self._worker_pool.pop(worker, ""))
        if pool is not None:
            pool.workers.pop(worker, None)
            pool.replacements += 1
        if stop:
            self.executor.stop_worker(worker)

    def _demand(self) -> dict[str, int]:
        """Units each pool will have to run soon: those queued, plus the chunks of tasks whose
        prompt is not encoded yet (so a pool grows for a task's chunks when the task arrives)."""
        demand = self._queue.workers_wanted_by_pool()
        for task in self._tasks.values():
            if task.prompt is None and task.status in ("preparing", "queued"):
                share = task.demand_share
                if share is None or share[0] != (task.plan is not None):
                    share = task.demand_share = (task.plan is not None, self._demand_share(task))
                for pool, units in share[1]:
                    demand[pool] = demand.get(pool, 0) + units
        return demand

    def _demand_share(self, task: _Task) -> tuple[tuple[str, int], ...]:
        """The units a task waiting for its prompt will want per pool (cached by ``_demand``: the
        loop runs every step over every such task, and a queue may hold thousands)."""
        chunks = len(task.plan.chunks) if task.plan is not None else 1
        share = [(task.pool, chunks * len(task.results))]
        carries = any(v.type == "reference" for v in task.task.inputs.reference_videos)
        if task.task.settings.audio and task.profile.audio_factory is not None and not carries:
            # The audio model loads while the prompt encodes and the first chunks render.
            audio = f"audio:{task.task.model}"
            self._ensure_pool(audio, "audio", task.profile)
            share.append((audio, len(task.results)))
        return tuple(share)

    def _scale_pools(self) -> None:
        now = self._clock()
        demand = self._demand()
        for name, pool in self._pools.items():
            wanted = demand.get(name, 0)
            if pool.replacements >= self.config.max_replacements and wanted and pool.count() == 0:
                self._fail_pool(
                    pool, WorkerLostError(f"no worker left in {name} after {pool.replacements} replacement(s)")
                )
                continue
            for _ in range(pool.to_start(wanted)):
                self._start_worker(pool)
            if not wanted:
                for worker in pool.to_stop(now):
                    self._remove_worker(worker, stop=True)
                    pool.replacements -= 1  # an idle stop is not a replacement

    def _fail_pool(self, pool: PoolState, error: FarmError) -> None:
        """No worker can be had for ``pool``: fail every task that waits on it."""
        for task in list(self._tasks.values()):
            if task.status == "ended":
                continue
            if any(
                u
                for u in self._queue.remove(
                    lambda u, t=task: u.task_uuid == t.spec.task_uuid and u.pool == pool.spec.name
                )
            ):
                self._fail_task(task, error)

    # == outcomes =============================================================================

    def _handle(self, outcome: Outcome) -> None:
        handler = _HANDLERS[type(outcome)]
        handler(self, outcome)

    def _on_worker_ready(self, outcome: WorkerReady) -> None:
        pool = self._pools.get(self._worker_pool.get(outcome.worker, ""))
        if pool is not None and outcome.worker in pool.workers:
            pool.set_status(outcome.worker, "idle", self._clock())

    def _on_worker_failed(self, outcome: WorkerFailed) -> None:
        log.warning("worker %s failed: %s", outcome.worker, outcome.error)
        unit = self._running.get(outcome.worker)
        self._remove_worker(outcome.worker, stop=False)
        if unit is not None:
            self._on_unit_failed(UnitFailed(unit=unit, worker=outcome.worker, error=outcome.error, worker_lost=True))

    def _on_prepared_outcome(self, outcome: Prepared) -> None:
        task = self._tasks.get(outcome.task_uuid)
        if task is None or task.status == "ended":
            return
        if task.cancelling:
            self._end_cancelled(task)
        elif outcome.error is not None:
            self._fail_task(task, outcome.error)
        else:
            assert outcome.inputs is not None
            self._on_prepared(task, outcome.inputs)

    def _on_prompt_done(self, outcome: PromptDone) -> None:
        unit = outcome.unit
        self._release(outcome.worker, unit, ok=True)
        task = self._tasks.get(unit.task_uuid)
        if task is None or task.status == "ended" or task.cancelling:
            return
        task.prompt, task.extended = outcome.embeds, outcome.extended
        for result in task.results.values():
            self._open(task, result)
            self._queue_result(task, result)

    def _queue_result(self, task: _Task, result: _Result) -> None:
        """A result's chunks (its first only, in sequential mode) and its audio enter the queue."""
        plan, spec = task.plan, task.task
        assert plan is not None and task.prepared is not None
        cost = _chunk_cost(task)
        if task.codenoise:
            pool = self._pools[task.pool]
            gang = max(1, min(len(plan.chunks), pool.policy.max_workers))
            self._push(
                task, self._unit(task, "codenoise", result_index=result.index, cost=cost * len(plan.chunks), gang=gang)
            )
        for chunk in [] if task.codenoise else plan.chunks[:1] if task.sequential else plan.chunks:
            self._push(
                task,
                self._unit(
                    task, "chunk", result_index=result.index, index=chunk.index, cost=cost, payload=(chunk, None)
                ),
            )
        if result.wants_audio:
            audio_pool = f"audio:{spec.model}"
            self._ensure_pool(audio_pool, "audio", task.profile)
            # On its own small pool: charged lightly, so audio does not eat the key's video share.
            self._push(
                task,
                self._unit(task, "audio", pool=audio_pool, result_index=result.index, cost=cost * AUDIO_COST_SHARE),
            )
        elif task.prepared.carried_audio:
            self.executor.add_audio((spec.task_uuid, result.index), carried=task.prepared.conditioning)
            result.audio_done = True

    def _open(self, task: _Task, result: _Result) -> None:
        spec, plan = task.task, task.plan
        assert plan is not None and task.prepared is not None
        fmt = output_format(spec.output_format)
        path = f"{task.spec.out_dir}/{spec.task_uuid}-{result.index}.{fmt.extension}"
        has_audio = result.wants_audio or task.prepared.carried_audio
        self.executor.open_result(
            (spec.task_uuid, result.index),
            FinishSpec(
                path=path,
                output_format=fmt.name,
                quality=spec.output_quality,
                width=spec.width,
                height=spec.height,
                fps=OUTPUT_FPS,
                audio=has_audio,
                plan=plan,
                lead_frames=task.prepared.lead_frames,
                audio_channels=task.prepared.carried_channels if task.prepared.carried_audio else 2,
            ),
        )
        result.opened = True

    def _on_chunk_done(self, outcome: ChunkDone) -> None:
        unit, meta = outcome.unit, outcome.meta
        if unit.kind == "codenoise":
            # One outcome per window; the gang is free once the last window is in.
            pending = unit.payload["pending"]
            pending.discard(meta.chunk_index)
            if not pending:
                self._release_gang(unit)
        else:
            self._release(outcome.worker, unit, ok=True)
        self._chunk_rendered(unit, meta, outcome.frames)

    def _chunk_rendered(self, unit: Unit, meta: Any, frames: Any) -> None:
        """A chunk (or a co-denoised window, ``meta.chunk_index``) is rendered: to the finisher."""
        index = meta.chunk_index
        task = self._tasks.get(unit.task_uuid)
        if task is None or task.status == "ended" or task.cancelling:
            return
        result = task.results[unit.result_index]
        if result.ended or result.status == "finishing" and index in result.chunks_done:
            return  # a chunk still in flight when its result was refused, or a duplicate
        plan = task.plan
        assert plan is not None
        finding = meta.safety
        if finding is not None and finding.flagged:
            start = plan.chunks[index].start
            lead = task.prepared.lead_frames if task.prepared else 0
            frame = max(0, start + (finding.frame or 0) - lead)
            self._fail_result(
                task,
                result,
                SafetyError(
                    f"result {result.index} was flagged by the safety checker: {finding.concept} "
                    f"(score {finding.score:.2f}) near frame {frame}; nothing is delivered"
                ),
            )
            return
        if index in result.chunks_done:
            return
        result.chunks_done.add(index)
        result.model_s += meta.seconds
        result.activity.append((meta.started_at, meta.started_at + meta.seconds))
        result.steps[index] = task.profile.num_inference_steps
        self.executor.add_chunk((task.spec.task_uuid, result.index), index, frames)
        if task.sequential and index + 1 < len(plan.chunks):
            nxt = plan.chunks[index + 1]
            tail = (plan.chunks[index].start, frames)
            self._push(
                task,
                self._unit(
                    task, "chunk", result_index=result.index, index=nxt.index, cost=unit.cost, payload=(nxt, tail)
                ),
            )
        self._emit(
            "chunk",
            unit.task_uuid,
            result.index,
            done=len(result.chunks_done),
            total=len(plan.chunks),
            seconds=meta.seconds,
        )
        self._maybe_finish(task, result)

    def _on_audio_done(self, outcome: AudioDone) -> None:
        unit = outcome.unit
        self._release(outcome.worker, unit, ok=True)
        task = self._tasks.get(unit.task_uuid)
        if task is None or task.status == "ended" or task.cancelling:
            return
        result = task.results[unit.result_index]
        if result.ended or result.audio_done:
            return
        result.audio_done = True
        result.audio_s = outcome.meta.seconds
        result.activity.append((outcome.meta.started_at, outcome.meta.started_at + outcome.meta.seconds))
        self.executor.add_audio((unit.task_uuid, result.index), (outcome.audio, outcome.meta.sample_rate))
        self._emit("audio", unit.task_uuid, result.index, done=1, total=1)
        self._maybe_finish(task, result)

    def _maybe_finish(self, task: _Task, result: _Result) -> None:
        assert task.plan is not None
        if (
            result.status in ("queued", "running")
            and len(result.chunks_done) == len(task.plan.chunks)
            and (result.audio_done or not result.wants_audio)
        ):
            result.status = "finishing"
            self.executor.finish_result((task.spec.task_uuid, result.index))

    def _on_unit_failed(self, outcome: UnitFailed) -> None:
        unit, error = outcome.unit, outcome.error
        if unit.kind == "codenoise":
            self._release_gang(unit, lost=outcome.worker if outcome.worker_lost else None)
            task = self._tasks.get(unit.task_uuid)
        elif outcome.worker_lost:
            self._running.pop(outcome.worker, None)
            self._queue.done(unit)
            self._queue.refund(unit)  # not the tenant's fault
            self._remove_worker(outcome.worker, stop=False)
            task = self._tasks.get(unit.task_uuid)
            if task is not None:
                task.in_flight.discard(id(unit))
                if not task.in_flight:
                    self._no_unit_in_flight(task)
        else:
            self._release(outcome.worker, unit, ok=isinstance(error, TaskCancelledError))
            task = self._tasks.get(unit.task_uuid)
        if task is None or task.status == "ended" or task.cancelling:
            return
        if isinstance(error, TaskCancelledError):
            return
        result = task.results.get(unit.result_index)
        if unit.kind != "prompt" and result is not None and result.ended:
            return
        if unit.attempts < self.config.max_attempts:
            unit.failed_on.add(outcome.worker)
            log.warning(
                "%s %d of %s result %d failed (attempt %d of %d), retrying: %s",
                unit.kind,
                unit.index,
                unit.task_uuid,
                unit.result_index,
                unit.attempts,
                self.config.max_attempts,
                error,
            )
            self._push(task, unit)
            return
        cause = WorkerLostError if outcome.worker_lost else RenderError
        what = {
            "prompt": "the prompt",
            "chunk": f"chunk {unit.index} of result {unit.result_index}",
            "codenoise": f"the co-denoised windows of result {unit.result_index}",
        }.get(unit.kind, f"the audio of result {unit.result_index}")
        failure = cause(f"{what} of task {unit.task_uuid} failed {unit.attempts} time(s); last cause: {_short(error)}")
        if unit.kind == "prompt" or result is None:
            self._fail_task(task, failure)
        else:
            self._fail_result(task, result, failure)

    def _on_encoded(self, outcome: Encoded) -> None:
        task = self._tasks.get(outcome.task_uuid)
        if task is None or task.status == "ended" or task.cancelling:
            return
        self._emit(
            "encode", outcome.task_uuid, outcome.result_index, done=outcome.frames_done, total=task.task.num_frames
        )

    def _on_finished(self, outcome: Finished) -> None:
        task = self._tasks.get(outcome.task_uuid)
        if task is None or task.status == "ended":
            return
        result = task.results.get(outcome.result_index)
        if result is None or result.ended:
            return
        if outcome.error is not None or outcome.file is None:
            error = outcome.error or RenderError("the finisher returned no file")
            if task.cancelling:
                return
            self._fail_result(
                task,
                result,
                RenderError(
                    f"result {result.index} of task {task.spec.task_uuid} failed while encoding: {_short(error)}"
                ),
                abort=False,
            )
            return
        spec, file = task.task, outcome.file
        assert task.plan is not None and task.prepared is not None
        result.status = "success"
        result.activity.extend(file.activity)
        result.outcome = ResultOutcome(
            index=result.index,
            seed=result.seed,
            status="success",
            video_uuid=result.video_uuid,
            path=file.path,
            extended_prompt=task.extended,
            model_s=result.model_s,
            audio_s=result.audio_s,
            encode_s=file.encode_seconds,
            wall_s=time.perf_counter() - task.started,
            chunks=len(task.plan.chunks),
            num_frames=spec.num_frames,
            width=spec.width,
            height=spec.height,
            has_audio=result.wants_audio or task.prepared.carried_audio,
            activity=tuple(sorted(result.activity)),
        )
        self._emit("result", spec.task_uuid, result.index, outcome=result.outcome)
        self._maybe_end(task)

    def _on_steps(self, outcome: StepReport) -> None:
        for task in self._tasks.values():
            reported = outcome.steps.get(task.token)
            if not reported or task.plan is None or task.status == "ended":
                continue
            steps = task.profile.num_inference_steps
            for (result_index, chunk_index), step in reported.items():
                result = task.results.get(result_index)
                if result is not None and chunk_index not in result.chunks_done:
                    result.steps[chunk_index] = min(steps, step)
            total = len(task.plan.chunks) * steps
            for result in task.results.values():
                if result.ended:
                    continue
                done = sum(result.steps.values())
                if done != result.steps_emitted:
                    result.steps_emitted = done
                    self._emit("denoise", task.spec.task_uuid, result.index, done=done, total=total)

    # == ends =================================================================================

    def _fail_result(self, task: _Task, result: _Result, error: BaseException, *, abort: bool = True) -> None:
        """One result ends in error; the task's other results go on."""
        info = error_info(error)
        result.status = "error"
        result.error = error
        result.outcome = ResultOutcome(
            index=result.index,
            seed=result.seed,
            status="error",
            error_code=info.code,
            error_message=str(error) or info.code,
            error_parameter=getattr(error, "parameter", None) or None,
            extended_prompt=task.extended,
        )
        self._queue.remove(
            lambda u: u.task_uuid == task.spec.task_uuid and u.result_index == result.index and u.kind != "prompt"
        )
        if abort and result.opened:
            self.executor.abort_result((task.spec.task_uuid, result.index))
        self._emit("result", task.spec.task_uuid, result.index, outcome=result.outcome)
        self._maybe_end(task)

    def _fail_task(self, task: _Task, error: BaseException) -> None:
        """The task fails as a whole (bad media, no workers): every unfinished result fails."""
        info = error_info(error)
        parameter = getattr(error, "parameter", None)
        message = str(error) or info.code
        if isinstance(error, TaskValidationError):
            first = error.violations[0] if error.violations else None
            message = "; ".join(str(v) for v in error.violations) or message
            parameter = first.field if first else parameter
        elif not isinstance(error, FarmError):
            message = f"the farm failed on this task ({type(error).__name__})"
            log.error("task %s failed: %r", task.spec.task_uuid, error)
        task.code, task.message, task.parameter, task.error = info.code, message, parameter, error
        self._queue.remove(lambda u: u.task_uuid == task.spec.task_uuid)
        for result in task.results.values():
            if result.ended:
                continue
            if result.opened:
                self.executor.abort_result((task.spec.task_uuid, result.index))
            result.status = "error"
            result.outcome = ResultOutcome(
                index=result.index,
                seed=result.seed,
                status="error",
                error_code=info.code,
                error_message=message,
                error_parameter=parameter,
            )
        if task.in_flight:
            # Let in-flight units stop quickly; their outcomes are ignored.
            self.executor.cancel(task.token)
        self._emit("failed", task.spec.task_uuid, code=info.code, message=message, parameter=parameter)
        # An error even with no result to fail (a hand-over that does not parse).
        self._end_task(task, as_="success" if any(r.status == "success" for r in task.results.values()) else "error")

    def _on_cancel(self, task: _Task) -> None:
        task.cancelling = True
        self._queue.remove(lambda u: u.task_uuid == task.spec.task_uuid)
        for result in task.results.values():
            if result.opened and not result.ended:
                self.executor.abort_result((task.spec.task_uuid, result.index))
        if task.in_flight:
            self.executor.cancel(task.token)  # workers stop at their next denoising step
        else:
            self._end_cancelled(task)

    def _end_cancelled(self, task: _Task) -> None:
        if task.status == "ended":
            return
        message = "cancelled while running" if task.status == "running" else "cancelled while queued"
        for result in task.results.values():
            if not result.ended:
                result.status = "cancelled"
                result.outcome = ResultOutcome(
                    index=result.index,
                    seed=result.seed,
                    status="cancelled",
                    error_code=TaskCancelledError.code,
                    error_message=message,
                )
        task.code, task.message = TaskCancelledError.code, message
        self._emit("cancelled", task.spec.task_uuid, code=TaskCancelledError.code, message=message)
        self._end_task(task, as_="cancelled")

    def _maybe_end(self, task: _Task) -> None:
        if all(r.ended for r in task.results.values()) and not task.cancelling:
            self._end_task(task)

    def _end_task(self, task: _Task, as_: str | None = None) -> None:
        if task.status == "ended":
            return
        results = list(task.results.values())
        if as_ is None:
            as_ = "success" if any(r.status == "success" for r in results) or not results else "error"
        task.status, task.ended_as = "ended", as_
        self._positions_dirty = True
        if task.token:
            if task.in_flight:
                self.executor.cancel(task.token)
            else:
                self.executor.forget_token(task.token)
        if as_ != "cancelled":
            self._emit(
                "done",
                task.spec.task_uuid,
                data={
                    "status": as_,
                    "succeeded": sum(r.status == "success" for r in results),
                    "failed": sum(r.status != "success" for r in results),
                },
            )
        self._ended.append(task.spec.task_uuid)
        while len(self._ended) > self.config.keep_ended:
            self._tasks.pop(self._ended.popleft(), None)

    # == events ===============================================================================

    def _emit(
        self, kind: EventKind, task_uuid: str | None = None, result_index: int | None = None, **fields: Any
    ) -> None:
        self._event_seq += 1
        self._events.append(
            SchedulerEvent(
                seq=self._event_seq,
                kind=kind,
                task_uuid=task_uuid,
                result_index=result_index,
                **fields,
            )
        )
        self._new_event.notify_all()

    def _positions(self) -> dict[str, int]:
        waiting = {
            t.spec.task_uuid: (t.tenant, (-t.spec.priority, t.seq), len(t.results) or 1)
            for t in self._tasks.values()
            if t.status in ("preparing", "queued")
        }
        return {task_uuid: i + 1 for i, task_uuid in enumerate(self._queue.task_order(waiting))}

    def _publish_positions(self) -> None:
        """Emit the positions that changed since the last ``positions`` event (None: no longer waiting)."""
        self._positions_dirty = False
        started = time.perf_counter()
        current = self._positions()
        # A deep queue makes the order costly: wait at least 20x what it took (<= 5% of the loop).
        self._positions_backoff = 20 * (time.perf_counter() - started)
        self._last_positions = self._clock()
        published = self._published_positions
        changes: dict[str, int | None] = {k: v for k, v in current.items() if published.get(k) != v}
        changes.update((k, None) for k in published.keys() - current.keys())
        self._published_positions = current
        if changes:
            self._emit("positions", data=changes)

    def _maybe_publish(self) -> None:
        now = self._clock()
        due = self._last_positions + max(self.config.positions_interval_s, self._positions_backoff)
        if self._positions_dirty and now >= due:
            self._publish_positions()
        if now - self._last_stats >= self.config.stats_interval_s:
            self._last_stats = now
            self._emit("stats", data=self.stats())

    def stats(self) -> dict:
        """Pools (workers by status, busy seconds), queues per pool and per key, scheduling latency."""
        with self._lock:
            now = self._clock()
            pools = {}
            for name, pool in self._pools.items():
                busy_s = sum(w.busy_s + (now - w.since if w.status == "busy" else 0.0) for w in pool.workers.values())
                alive_s = sum(now - w.started for w in pool.workers.values())
                pools[name] = {
                    "starting": pool.count("starting"),
                    "idle": pool.count("idle"),
                    "busy": pool.count("busy"),
                    "busy_s": busy_s,
                    "alive_s": alive_s,
                    "replacements": pool.replacements,
                }
            latencies = sorted(self.latencies)
            return {
                "pools": pools,
                "queued_by_pool": self._queue.depth_by_pool(),
                "queued_by_key": {str(k): v for k, v in self._queue.depth_by_tenant().items()},
                "in_flight_by_key": {str(k): v for k, v in self._queue.in_flight_by_tenant().items()},
                "latency_p50": latencies[len(latencies) // 2] if latencies else 0.0,
                "latency_p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
                "dispatch_seconds": self.dispatch_seconds,
                "dispatches": self.dispatches,
                "tasks": sum(1 for t in self._tasks.values() if t.status != "ended"),
            }

    def _task_snapshot(self, task: _Task, position: int | None) -> TaskSnapshot:
        status = cast(
            Status,
            {"preparing": "queued", "queued": "queued", "running": "running"}.get(task.status)
            or task.ended_as
            or "error",
        )
        total = len(task.plan.chunks) if task.plan else 0
        results = tuple(
            ResultSnapshot(
                index=r.index,
                status=cast(Status, r.status if r.ended else ("queued" if r.status == "queued" else "running")),
                chunks_done=len(r.chunks_done),
                chunks_total=total,
                outcome=r.outcome,
            )
            for r in task.results.values()
        )
        return TaskSnapshot(
            task_uuid=task.spec.task_uuid,
            status=status,
            results=results,
            position=position,
            chunk_renders=task.chunk_renders,
            code=task.code,
            message=task.message,
            parameter=task.parameter,
        )


_LAUNCHERS: dict[str, Callable[[SchedulerCore, _Task, Unit, str], None]] = {
    "prompt": SchedulerCore._launch_prompt,
    "chunk": SchedulerCore._launch_chunk,
    "audio": SchedulerCore._launch_audio,
}

_HANDLERS: dict[type, Callable[[SchedulerCore, Any], None]] = {
    WorkerReady: SchedulerCore._on_worker_ready,
    WorkerFailed: SchedulerCore._on_worker_failed,
    Prepared: SchedulerCore._on_prepared_outcome,
    PromptDone: SchedulerCore._on_prompt_done,
    ChunkDone: SchedulerCore._on_chunk_done,
    AudioDone: SchedulerCore._on_audio_done,
    UnitFailed: SchedulerCore._on_unit_failed,
    Encoded: SchedulerCore._on_encoded,
    Finished: SchedulerCore._on_finished,
    StepReport: SchedulerCore._on_steps,
}


def _pick_worker(unit: Unit, idle: list[str], pool: PoolState) -> str | None:
    """The idle worker ``unit`` goes to: the longest idle one it has not failed on; None while such
    a worker is busy (it waits for it); else any idle one.
    Without this a retry lands on the worker it just failed on (the only idle one, often) and a
    bad worker spends every attempt of a unit before it is retired."""
    if not unit.failed_on:
        return idle[0]
    fresh = next((w for w in idle if w not in unit.failed_on), None)
    if fresh is not None:
        return fresh
    if any(w not in unit.failed_on and state.status == "busy" for w, state in pool.workers.items()):
        return None  # one comes free when its unit ends (a starting one may never be placed)
    return idle[0]


#: Fair-share charge of a prompt encode and of a result's audio, as a share of one chunk's.
PROMPT_COST_SHARE = 0.05
AUDIO_COST_SHARE = 0.1


def _chunk_cost(task: _Task) -> float:
    """A chunk's share of GPU time in an arbitrary unit: frames x pixels x denoising steps."""
    window = task.profile.window_frames
    return window * task.native[0] * task.native[1] * task.profile.num_inference_steps / 1e9


def _safety_mode(task: VideoInferenceTask) -> str:
    """``none``, ``fast`` or ``full``: ``checkContent`` is the switch; with it on, mode ``none``
    (the seed's default) checks key frames."""
    if not task.safety.check_content:
        return "none"
    return "fast" if task.safety.mode == "none" else task.safety.mode


def _has_inputs(task: VideoInferenceTask) -> bool:
    inputs = task.inputs
    return bool(inputs.frame_images or inputs.reference_images or inputs.reference_videos or inputs.mask)


def _short(error: BaseException, limit: int = 300) -> str:
    """A one-line cause for a client: the error's class and first line, never a traceback."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _field(value: Any, name: str, default: Any) -> Any:
    """``value.name`` or ``value[name]`` (a pydantic model or a plain mapping), else ``default``."""
    if value is None:
        return default
    if isinstance(value, Mapping):
        return value.get(name, default)
    return getattr(value, name, default)


def scheduler_config(gateway: Any) -> SchedulerConfig:
    """The scheduler's config from the gateway's (``farm.gateway.config.GatewayConfig``): tenants'
    weights and limits, pool sizes per model, worker resources, retry and retirement limits."""

    def tenant(raw: Any) -> TenantPolicy:
        return TenantPolicy(
            weight=float(_field(raw, "weight", 1.0)), max_concurrency=_field(raw, "max_concurrency", None)
        )

    workers = int(_field(gateway, "workers", 2))

    def pool(raw: Any) -> PoolPolicy:
        return PoolPolicy(
            min_workers=int(_field(raw, "min_workers", 0)),
            max_workers=int(_field(raw, "max_workers", None) or workers),
            idle_timeout_s=float(_field(raw, "idle_timeout_s", 300.0)),
        )

    tenants = _field(gateway, "tenants", None) or {}
    pools = _field(gateway, "pools", None) or {}
    return SchedulerConfig(
        tenants={key: tenant(value) for key, value in tenants.items()},
        default_tenant=tenant(_field(gateway, "default_tenant", None)),
        pools={model: pool(value) for model, value in pools.items()},
        default_pool=pool(_field(gateway, "default_pool", None)),
        gpus_per_worker=float(_field(gateway, "gpus_per_worker", 0.0)),
        max_attempts=int(_field(gateway, "max_attempts", 3)),
        retire_after_failures=int(_field(gateway, "retire_after_failures", 3)),
    )
