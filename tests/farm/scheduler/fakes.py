"""In-memory stand-ins for the scheduler's collaborators: an ``Executor`` without Ray, model
profiles without backends, and a clock the test moves.

``FakeExecutor`` runs in simulated time: every ``poll`` is one tick, and a unit dispatched at tick
``t`` reports its outcome at tick ``t + ticks[kind]`` unless the test holds it, fails it or kills its
worker. Every call is recorded (``calls``), so a test can ask what ran where, when and in which
order. It also checks the scheduler keeps the executor's contract (one unit per worker at a time,
only ready and live workers, chunks handed to a finisher once, a result finished only when all of
it is in): a breach is recorded in ``violations`` and raised. It is thread-safe: the manager tests
drive it from a ``SchedulerHost`` thread while the test thread holds and releases units.

Example::

    executor = FakeExecutor(ticks={"chunk": 3})
    executor.hold(lambda call: call.result_index == 1)      # result 1's units wait ...
    core = SchedulerCore(executor, {MODEL: fake_profile()}, SchedulerConfig())
    ...
    executor.release()                                       # ... until now
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm.domain.errors import TaskCancelledError
from farm.render.executor import (
    AudioDone,
    ChunkDone,
    Encoded,
    Finished,
    FinishedFile,
    FinishSpec,
    MediaConfig,
    Outcome,
    PoolSpec,
    Prepared,
    PreparedInputs,
    PromptDone,
    ResultKey,
    StepReport,
    UnitFailed,
    WorkerFailed,
    WorkerReady,
)
from farm.workers.messages import AudioMeta, AudioWork, ChunkMeta, ChunkWork, PromptWork, SafetyFinding
from models.base import ModelProfile

#: The model of ``tests.conftest.BASE_TASK``.
MODEL = "skywork:skyreels@v4"


# -- profiles and clock ------------------------------------------------------------------------


def _no_backend(*_args: Any, **_kwargs: Any) -> Any:
    raise AssertionError("a fake profile's backends are never built: the FakeExecutor renders nothing")


def fake_profile(
    model_id: str = MODEL,
    *,
    audio: bool = True,
    safety: bool = True,
    extend: bool = True,
    conditioning: bool = True,
    chunk_mode: str = "parallel",
    steps: int = 4,
) -> ModelProfile:
    """A ``ModelProfile`` shaped like the tiny default (17-frame windows, overlap 5, stride 4, 112x64
    native for 16:9) whose factories are dummies: only the scheduler reads it."""
    return ModelProfile(
        model_id=model_id,
        description="fake profile for scheduler tests",
        window_frames=17,
        overlap_frames=5,
        temporal_stride=4,
        native_area=112 * 64,
        native_multiple=16,
        num_inference_steps=steps,
        guidance_scale=1.0,
        audio_steps=steps,
        video_factory=_no_backend,
        audio_factory=_no_backend if audio else None,
        prompt_extender_factory=_no_backend if extend else None,
        safety_factory=_no_backend if safety else None,
        takes_conditioning=conditioning,
        chunk_mode=chunk_mode,
    )


class FakeClock:
    """A ``time.monotonic`` stand-in that moves only when told (``SchedulerCore(clock=...)``)."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- what the executor records -----------------------------------------------------------------


@dataclass(frozen=True)
class Frames:
    """The token a fake chunk returns in place of its frames (the scheduler never reads it)."""

    task_uuid: str
    result_index: int
    chunk_index: int
    attempt: int


@dataclass(eq=False)
class Call:
    """One unit the scheduler dispatched to a worker, and what became of it."""

    kind: str  # prompt, chunk, audio
    unit: Any
    worker: str
    work: PromptWork | ChunkWork | AudioWork
    #: Tick it was dispatched at and the tick its outcome was reported at (None: not yet).
    started: int
    ended: int | None = None
    #: done, failed, lost, cancelled (None while it runs).
    outcome: str | None = None
    prompt: Any = None
    conditioning: Any = None
    tail: Any = None
    #: Which dispatch of this unit it is (1 = first).
    attempt: int = 1
    held: bool = False
    due: int | None = None

    @property
    def task_uuid(self) -> str:
        return self.work.task_uuid

    @property
    def result_index(self) -> int | None:
        return None if isinstance(self.work, PromptWork) else self.work.result_index

    @property
    def chunk_index(self) -> int | None:
        return self.work.chunk.index if isinstance(self.work, ChunkWork) else None

    @property
    def token(self) -> str | None:
        return None if isinstance(self.work, PromptWork) else self.work.cancel_token

    def overlaps(self, other: Call) -> bool:
        """Whether the two calls ran at the same time (open intervals of ticks)."""
        assert self.ended is not None and other.ended is not None
        return self.started < other.ended and other.started < self.ended


@dataclass
class _Rule:
    """Fail (or lose the worker of) calls matching ``match``, ``times`` times (None: always)."""

    match: Callable[[Call], bool]
    error: BaseException
    times: int | None
    lost: bool = False


@dataclass
class FakeResult:
    """A result's finishing as the fake finisher saw it."""

    spec: FinishSpec
    chunks: dict[int, Any] = field(default_factory=dict)
    audio: Any = None
    carried: Any = None
    state: str = "open"  # open, finishing, finished, aborted


class ProtocolViolation(AssertionError):
    """The scheduler broke the executor's contract (``FakeExecutor.violations`` lists them)."""


# -- the executor ------------------------------------------------------------------------------


class FakeExecutor:
    """An ``Executor`` (``farm.render.executor``) in memory; see the module docstring.

    ``ticks``: polls each kind of unit takes (default 1 each: done at the next poll).
    ``chunk_seconds`` / ``audio_seconds``: the model seconds their metas report.
    ``auto_ready``: a started worker is ready at the next poll; False: only after ``make_ready``.
    ``extended``: the extended prompt (a string, or a function of the prompt) when the scheduler asks
    for an extension. ``stop_on_cancel``: held units of a cancelled render stop at the next poll (as
    real workers stop at their next denoising step); False: they wait for ``release``.
    ``clock`` / ``tick_s``: advance a ``FakeClock`` by ``tick_s`` seconds on each poll.
    ``report_steps``: each poll reports one denoising step for every chunk in flight.
    ``resolve_media``: ``prepare`` fetches and decodes the task's media inputs for real, with the
    resolver the real preparation builds from the task's ``MediaConfig`` (its owner's assets and
    results, the allow-list), and fails the task with what it raises.
    """

    def __init__(
        self,
        *,
        ticks: dict[str, int] | None = None,
        chunk_seconds: float = 1.0,
        audio_seconds: float = 0.5,
        sample_rate: int = 16_000,
        auto_ready: bool = True,
        extended: str | Callable[[str], str] | None = None,
        stop_on_cancel: bool = True,
        clock: FakeClock | None = None,
        tick_s: float = 0.0,
        report_steps: bool = False,
        resolve_media: bool = False,
    ):
        self.resolve_media = resolve_media
        self.ticks = {"prompt": 1, "chunk": 1, "audio": 1, **(ticks or {})}
        self.chunk_seconds = chunk_seconds
        self.audio_seconds = audio_seconds
        self.sample_rate = sample_rate
        self.auto_ready = auto_ready
        self.extended = extended
        self.stop_on_cancel = stop_on_cancel
        self.clock = clock
        self.tick_s = tick_s
        self.report_steps = report_steps
        #: Raised by ``prepare`` as the task's ``Prepared.error`` (e.g. a ``TaskValidationError``).
        self.prepare_error: BaseException | None = None
        #: ``PreparedInputs`` fields for tasks with media inputs (besides width and height).
        self.prepared_fields: dict[str, Any] = {"conditioned": True}
        #: Result key -> the error its finishing fails with.
        self.encode_errors: dict[ResultKey, BaseException] = {}
        #: Worker ids that never become ready (actors Ray cannot place: no GPU free).
        self.unplaceable: set[str] = set()

        self.tick = 0
        self.calls: list[Call] = []
        self.dispatches: Counter[str] = Counter()
        self.started_workers: list[str] = []
        self.pools: dict[str, PoolSpec] = {}
        self.stopped: list[str] = []
        self.dead: list[str] = []
        self.prepared: list[tuple[Any, Any, MediaConfig]] = []
        self.results: dict[ResultKey, FakeResult] = {}
        self.aborted: list[ResultKey] = []
        self.cancelled: list[str] = []
        self.forgotten: list[str] = []
        self.violations: list[str] = []
        self.shut_down = False

        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._live: set[str] = set()
        self._ready: set[str] = set()
        #: Killed while idle, and the scheduler was not told yet.
        self._dying: set[str] = set()
        self._not_ready: list[str] = []
        self._running: dict[str, Call] = {}
        self._attempts: Counter[tuple] = Counter()
        #: (due tick, order, outcome or a function producing it at that tick)
        self._scheduled: list[tuple[int, int, Any]] = []
        self._order = itertools.count()
        self._holds: list[Callable[[Call], bool]] = []
        self._rules: list[_Rule] = []
        self._flags: list[tuple[Callable[[Call], bool], SafetyFinding]] = []

    # -- test controls -------------------------------------------------------------------------

    def hold(self, match: Callable[[Call], bool] | None = None) -> None:
        """Units dispatched from now on that ``match`` (default: all) wait until ``release``."""
        with self._cond:
            self._holds.append(match or (lambda call: True))

    def release(self, match: Callable[[Call], bool] | None = None, *, keep_holding: bool = False) -> int:
        """Let held units that ``match`` (default: all) finish at the next poll; unless
        ``keep_holding``, later units are not held any more. Returns how many were released."""
        with self._cond:
            if not keep_holding:
                self._holds.clear()
            released = [c for c in self.held() if match is None or match(c)]
            for call in released:
                call.held = False
                self._complete_at(call, self.tick)
            self._cond.notify_all()
            return len(released)

    def held(self) -> list[Call]:
        """Units waiting for ``release``, in dispatch order."""
        with self._cond:
            return [c for c in self.calls if c.held]

    def wait_held(self, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Block until at least ``count`` units are held (the manager tests' scheduler thread)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.held()) >= count, timeout):
                raise AssertionError(f"only {len(self.held())} unit(s) held after {timeout}s, expected {count}")
            return self.held()

    def fail(self, match: Callable[[Call], bool], *, times: int | None = 1, error: BaseException | None = None) -> None:
        """Matching units raise ``error`` (default ``RuntimeError('boom')``) inside a live worker,
        ``times`` times (None: always)."""
        with self._cond:
            self._rules.append(_Rule(match, error or RuntimeError("boom"), times))

    def lose(self, match: Callable[[Call], bool], *, times: int | None = 1) -> None:
        """The worker running a matching unit dies with it (``UnitFailed(worker_lost=True)``)."""
        with self._cond:
            self._rules.append(_Rule(match, ConnectionError("the worker's process died"), times, lost=True))

    def flag(
        self, match: Callable[[Call], bool], *, concept: str = "gore", score: float = 0.93, frame: int = 2
    ) -> None:
        """The safety checker flags matching chunks."""
        with self._cond:
            self._flags.append((match, SafetyFinding(flagged=True, concept=concept, score=score, frame=frame)))

    def make_ready(self) -> None:
        """Workers started with ``auto_ready=False`` become ready at the next poll (and later ones at once)."""
        with self._cond:
            self.auto_ready = True
            for worker in self._not_ready:
                self._schedule(self.tick, lambda w=worker: self._ready_outcome(w))
            self._not_ready.clear()
            self._cond.notify_all()

    def kill_worker(self, worker: str) -> None:
        """``worker``'s process dies now: its unit (if any) fails as lost, else ``WorkerFailed``."""
        with self._cond:
            call = self._running.get(worker)
            if call is not None:
                self._rules.insert(
                    0, _Rule(lambda c, target=call: c is target, ConnectionError("killed"), 1, lost=True)
                )
                if call.held:
                    call.held = False
                    self._complete_at(call, self.tick)
            else:
                self._die(worker)
                self._dying.add(worker)
                self._schedule(self.tick, lambda: self._worker_failed(worker))
            self._cond.notify_all()

    # -- queries -------------------------------------------------------------------------------

    def units(self, kind: str | None = None, task_uuid: str | None = None) -> list[Call]:
        """Dispatched units, in dispatch order."""
        with self._cond:
            return [c for c in self.calls if (kind is None or c.kind == kind) and (task_uuid in (None, c.task_uuid))]

    def started_tasks(self) -> list[str]:
        """Task UUIDs in the order their first unit was dispatched."""
        return list(dict.fromkeys(c.task_uuid for c in self.units()))

    def live_workers(self, kind: str | None = None) -> list[str]:
        with self._cond:
            return sorted(w for w in self._live if kind is None or self.pools[w].kind == kind)

    def check(self) -> None:
        """Fail if the scheduler ever broke the executor's contract."""
        assert not self.violations, "\n".join(self.violations)

    # -- the Executor protocol -----------------------------------------------------------------

    def start_worker(self, pool: PoolSpec) -> str:
        with self._cond:
            worker = f"{pool.kind}-{next(self._ids)}"
            self.pools[worker] = pool
            self.started_workers.append(worker)
            self._live.add(worker)
            if worker in self.unplaceable:
                pass
            elif self.auto_ready:
                self._schedule(self.tick + 1, lambda: self._ready_outcome(worker))
            else:
                self._not_ready.append(worker)
            return worker

    def stop_worker(self, worker: str) -> None:
        with self._cond:
            if worker in self._running:
                self._violation(f"stop_worker({worker}) while it runs {self._running[worker]}")
            self.stopped.append(worker)
            self._live.discard(worker)
            self._ready.discard(worker)
            if worker in self._not_ready:
                self._not_ready.remove(worker)

    def prepare(self, task: Any, profile: Any, media: MediaConfig) -> None:
        error = self.prepare_error
        if self.resolve_media and error is None:
            from farm.domain.errors import TaskValidationError
            from farm.io.media import resolve_inputs
            from farm.render.prepare import resolver_for

            try:
                resolve_inputs(task, resolver_for(media))
            except TaskValidationError as failure:
                error = failure
        with self._cond:
            self.prepared.append((task, profile, media))
            if error is not None:
                outcome = Prepared(task_uuid=task.task_uuid, error=error)
            else:
                inputs = PreparedInputs(
                    width=task.width, height=task.height, conditioning="conditioning", **self.prepared_fields
                )
                outcome = Prepared(task_uuid=task.task_uuid, inputs=inputs)
            self._schedule(self.tick + 1, outcome)

    def encode_prompt(self, unit: Any, worker: str, work: PromptWork) -> None:
        self._dispatch(Call(kind="prompt", unit=unit, worker=worker, work=work, started=self.tick))

    def render_chunk(self, unit: Any, worker: str, work: ChunkWork, prompt: Any, conditioning: Any, tail: Any) -> None:
        call = Call(
            kind="chunk",
            unit=unit,
            worker=worker,
            work=work,
            started=self.tick,
            prompt=prompt,
            conditioning=conditioning,
            tail=tail,
        )
        self._dispatch(call)

    def render_audio(self, unit: Any, worker: str, work: AudioWork, conditioning: Any) -> None:
        call = Call(kind="audio", unit=unit, worker=worker, work=work, started=self.tick, conditioning=conditioning)
        self._dispatch(call)

    def open_result(self, key: ResultKey, spec: FinishSpec) -> None:
        with self._cond:
            existing = self.results.get(key)
            if existing is not None and existing.state in ("open", "finishing"):
                self._violation(f"open_result({key}) while it is {existing.state}")
            self.results[key] = FakeResult(spec=spec)

    def add_chunk(self, key: ResultKey, chunk_index: int, frames: Any) -> None:
        with self._cond:
            result = self._open(key, "add_chunk")
            if result is None:
                return
            if chunk_index in result.chunks:
                self._violation(f"chunk {chunk_index} of {key} handed to the finisher twice")
            result.chunks[chunk_index] = frames

    def add_audio(self, key: ResultKey, audio: Any = None, *, carried: Any = None) -> None:
        with self._cond:
            result = self._open(key, "add_audio")
            if result is not None:
                result.audio, result.carried = audio, carried

    def finish_result(self, key: ResultKey) -> None:
        with self._cond:
            result = self._open(key, "finish_result")
            if result is None:
                return
            missing = set(range(len(result.spec.plan.chunks))) - set(result.chunks)
            if missing:
                self._violation(f"finish_result({key}) with chunks {sorted(missing)} missing")
            if result.spec.audio and result.audio is None and result.carried is None:
                self._violation(f"finish_result({key}) without its audio")
            result.state = "finishing"
            self._schedule(self.tick + 1, lambda: self._finish_outcomes(key))

    def abort_result(self, key: ResultKey) -> None:
        with self._cond:
            self.aborted.append(key)
            result = self.results.get(key)
            if result is not None and result.state in ("open", "finishing"):
                result.state = "aborted"

    def cancel(self, token: str) -> None:
        with self._cond:
            self.cancelled.append(token)
            if self.stop_on_cancel:
                for call in self.held():
                    if call.token == token:
                        call.held = False
                        self._complete_at(call, self.tick)
            self._cond.notify_all()

    def forget_token(self, token: str) -> None:
        with self._cond:
            self.forgotten.append(token)

    def poll(self, timeout: float, tokens: Sequence[str] = ()) -> list[Outcome]:
        with self._cond:
            self.tick += 1
            if self.clock is not None and self.tick_s:
                self.clock.advance(self.tick_s)
            outcomes = self._take_due()
            if not outcomes and not self._scheduled and timeout > 0:
                # Nothing pending: wait for the test thread (release, make_ready, kill_worker).
                self._cond.wait_for(lambda: bool(self._scheduled), timeout)
                outcomes = self._take_due()
            if self.report_steps and tokens:
                steps: dict[str, dict[tuple[int, int], int]] = {}
                for call in self._running.values():
                    if call.kind == "chunk" and call.token in tokens:
                        steps.setdefault(call.token, {})[(call.result_index, call.chunk_index)] = 1
                if steps:
                    outcomes.append(StepReport(steps=steps))
            return outcomes

    def shutdown(self) -> None:
        with self._cond:
            self.shut_down = True
            self._scheduled.clear()
            self._live.clear()
            self._cond.notify_all()

    # -- internals -----------------------------------------------------------------------------

    def _violation(self, message: str) -> None:
        self.violations.append(message)
        raise ProtocolViolation(message)

    def _schedule(self, due: int, outcome: Any) -> None:
        self._scheduled.append((due, next(self._order), outcome))

    def _take_due(self) -> list[Outcome]:
        due = sorted(entry for entry in self._scheduled if entry[0] <= self.tick)
        if not due:
            return []
        self._scheduled = [entry for entry in self._scheduled if entry[0] > self.tick]
        outcomes: list[Outcome] = []
        for _, _, item in due:
            produced = item() if callable(item) else item
            if produced is None:
                continue
            outcomes.extend(produced if isinstance(produced, list) else [produced])
        return outcomes

    def _ready_outcome(self, worker: str) -> Outcome | None:
        if worker not in self._live:
            return None  # stopped before it was ready: nothing of it is reported
        self._ready.add(worker)
        return WorkerReady(worker=worker, load_seconds=0.01)

    def _worker_failed(self, worker: str) -> Outcome | None:
        if worker not in self._dying:
            return None  # a unit dispatched to it meanwhile reported the death
        self._dying.discard(worker)
        return WorkerFailed(worker=worker, error=ConnectionError("killed"))

    def _die(self, worker: str) -> None:
        self.dead.append(worker)
        self._live.discard(worker)
        self._ready.discard(worker)

    def _dispatch(self, call: Call) -> None:
        with self._cond:
            worker = call.worker
            if self.shut_down:
                self._violation(f"{call.kind} dispatched after shutdown")
            if worker in self._dying:
                # Died while idle before the scheduler heard: the call fails as a Ray call on a dead
                # actor does, and that is how the scheduler hears of it.
                self._dying.discard(worker)
                call.attempt = 0
                self.calls.append(call)
                self.dispatches[worker] += 1
                self._running[worker] = call
                self._rules.insert(
                    0, _Rule(lambda c, target=call: c is target, ConnectionError("killed"), 1, lost=True)
                )
                self._complete_at(call, self.tick + 1)
                return
            if worker not in self._live:
                self._violation(f"{call.kind} of {call.task_uuid} dispatched to {worker}, which is not alive")
            if worker not in self._ready:
                self._violation(f"{call.kind} of {call.task_uuid} dispatched to {worker} before it was ready")
            if worker in self._running:
                self._violation(
                    f"{call.kind} of {call.task_uuid} dispatched to {worker}, busy with {self._running[worker]}"
                )
            if call.kind == "prompt" and self.pools[worker].kind != "video":
                self._violation(f"a prompt dispatched to {worker}")
            if call.kind == "chunk" and self.pools[worker].kind != "video":
                self._violation(f"a chunk dispatched to {worker}")
            if call.kind == "audio" and self.pools[worker].kind != "audio":
                self._violation(f"audio dispatched to {worker}")
            identity = (call.kind, call.task_uuid, call.result_index, call.chunk_index)
            self._attempts[identity] += 1
            call.attempt = self._attempts[identity]
            self.calls.append(call)
            self.dispatches[worker] += 1
            self._running[worker] = call
            if any(match(call) for match in self._holds):
                call.held = True
                self._cond.notify_all()
            else:
                self._complete_at(call, self.tick + self.ticks[call.kind])

    def _complete_at(self, call: Call, due: int) -> None:
        call.due = due
        self._schedule(due, lambda: self._outcome(call))

    def _outcome(self, call: Call) -> Outcome | None:
        if self._running.get(call.worker) is not call:
            return None  # its worker was stopped or died meanwhile
        del self._running[call.worker]
        call.ended = self.tick
        cancelled = call.token is not None and call.token in self.cancelled
        for rule in self._rules:
            if cancelled and not rule.lost:
                continue  # a live worker raises TaskCancelledError at its next step; a dead one is dead
            if rule.times != 0 and rule.match(call):
                if rule.times is not None:
                    rule.times -= 1
                if rule.lost:
                    call.outcome = "lost"
                    self._die(call.worker)
                else:
                    call.outcome = "failed"
                return UnitFailed(unit=call.unit, worker=call.worker, error=rule.error, worker_lost=rule.lost)
        if cancelled:
            call.outcome = "cancelled"
            return UnitFailed(
                unit=call.unit, worker=call.worker, error=TaskCancelledError(f"render {call.token} cancelled")
            )
        call.outcome = "done"
        work = call.work
        if isinstance(work, PromptWork):
            extended = None
            if work.extend_seed is not None:
                extended = self.extended(work.prompt) if callable(self.extended) else self.extended
                extended = extended or f"{work.prompt}, in golden light"
            return PromptDone(unit=call.unit, worker=call.worker, embeds=f"embeds:{work.task_uuid}", extended=extended)
        if isinstance(work, ChunkWork):
            finding = None
            if work.safety_mode != "none":
                finding = SafetyFinding(flagged=False, concept=None, score=0.1, frame=None)
                finding = next((f for match, f in self._flags if match(call)), finding)
            meta = ChunkMeta(
                task_uuid=work.task_uuid,
                result_index=work.result_index,
                chunk_index=work.chunk.index,
                seconds=self.chunk_seconds,
                started_at=time.time(),
                worker_pid=hash(call.worker) & 0xFFFF,
                num_frames=work.chunk.num_frames,
                safety=finding,
            )
            frames = Frames(work.task_uuid, work.result_index, work.chunk.index, call.attempt)
            return ChunkDone(unit=call.unit, worker=call.worker, meta=meta, frames=frames)
        assert isinstance(work, AudioWork)
        audio_meta = AudioMeta(
            task_uuid=work.task_uuid,
            result_index=work.result_index,
            seconds=self.audio_seconds,
            started_at=time.time(),
            sample_rate=self.sample_rate,
        )
        return AudioDone(unit=call.unit, worker=call.worker, meta=audio_meta, audio=f"audio:{work.task_uuid}")

    def _open(self, key: ResultKey, what: str) -> FakeResult | None:
        result = self.results.get(key)
        if result is None or result.state != "open":
            self._violation(f"{what}({key}) on a result that is {result.state if result else 'not open'}")
            return None
        return result

    def _finish_outcomes(self, key: ResultKey) -> list[Outcome] | None:
        result = self.results[key]
        if result.state != "finishing":
            return None  # aborted meanwhile: nothing of it is reported
        error = self.encode_errors.get(key)
        if error is not None:
            result.state = "aborted"
            return [Finished(task_uuid=key[0], result_index=key[1], error=error)]
        spec = result.spec
        frames = spec.plan.num_frames - spec.lead_frames
        path = Path(spec.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"fake video")
        result.state = "finished"
        file = FinishedFile(path=str(path), encode_seconds=0.01, frames=frames)
        return [
            Encoded(task_uuid=key[0], result_index=key[1], frames_done=frames),
            Finished(task_uuid=key[0], result_index=key[1], file=file),
        ]
