"""The control plane in the cluster: the scheduler core hosted in a detached, named Ray actor.

Why a detached actor (and not a Ray job per task): one loop must see every queued unit of every
task to share the GPUs fairly, and it must outlive the gateway. A detached named actor
(``farm-scheduler`` in namespace ``farm``) is found by every gateway replica, survives a gateway
crash or redeploy, and owns the worker and finisher actors, so renders go on while no gateway is
connected. If the actor itself dies, Ray restarts it (``max_restarts=-1``) empty: the gateway sees a
new ``epoch`` and hands every unfinished task over again from its store (results whose file was
final are not rendered again; a result in progress renders again from the start, with its seed, so
its frames are the same).

Clients (``SchedulerClient``) give the gateway one interface over this actor and over an
in-process core (tests, the single-process mode).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from farm.scheduler.core import SchedulerConfig, SchedulerCore
from farm.scheduler.events import EventBatch, Snapshot, TaskSpec

log = logging.getLogger(__name__)

SCHEDULER_NAMESPACE = "farm"
DEFAULT_SCHEDULER_NAME = "farm-scheduler"


class SchedulerHost:
    """Runs a ``SchedulerCore``'s loop in a thread and exposes its public calls."""

    def __init__(self, core: SchedulerCore, step_timeout: float = 0.1):
        self.core = core
        self._stop = threading.Event()
        self._step_timeout = step_timeout
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.core.step(self._step_timeout)
            except Exception:  # the loop must outlive any single failure
                log.exception("scheduler step failed")
                self._stop.wait(0.5)

    def hand_over(self, spec: TaskSpec) -> bool:
        return self.core.hand_over(spec)

    def hand_over_many(self, specs: list[TaskSpec]) -> list[bool]:
        return self.core.hand_over_many(specs)

    def cancel(self, task_uuid: str) -> bool:
        return self.core.cancel(task_uuid)

    def events(self, after: int, timeout: float = 1.0) -> EventBatch:
        return self.core.events(after, timeout)

    def snapshot(self) -> Snapshot:
        return self.core.snapshot()

    def forget(self, task_uuid: str) -> None:
        self.core.forget(task_uuid)

    def set_profiles(self, profiles: Mapping[str, Any]) -> None:
        self.core.set_profiles(profiles)

    def warm_up(self, model_ids: list[str] | None = None) -> None:
        self.core.warm_up(model_ids)

    def stats(self) -> dict:
        return self.core.stats()

    def epoch(self) -> str:
        return self.core.epoch

    def chunk_renders(self, task_uuid: str) -> int:
        return self.core.chunk_renders(task_uuid)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.core.executor.shutdown()


class SchedulerActor(SchedulerHost):
    """``SchedulerHost`` with a ``RayExecutor`` whose finishers are CPU actors (wrapped by ``ray.remote``)."""

    def __init__(
        self, profiles: Mapping[str, Any], config: SchedulerConfig, finishers: int = 1, finisher_cpus: float = 1.0
    ):
        from farm.render.dispatch import RayExecutor

        logging.basicConfig(level=logging.INFO)
        executor = RayExecutor(finishing="actors", finishers=finishers, finisher_cpus=finisher_cpus)
        super().__init__(SchedulerCore(executor, profiles, config))

    def python_modules(self) -> list[str]:
        """Loaded module names (a test checks the control plane holds no torch)."""
        import sys

        return sorted(sys.modules)


class SchedulerClient(Protocol):
    """What the gateway's task manager needs from the scheduler, wherever it runs."""

    def hand_over(self, spec: TaskSpec) -> None: ...

    def cancel(self, task_uuid: str) -> bool: ...

    def events(self, after: int, timeout: float) -> EventBatch: ...

    def snapshot(self) -> Snapshot: ...

    def forget(self, task_uuid: str) -> None: ...

    def close(self, *, shutdown: bool = False) -> None: ...


class LocalClient:
    """A ``SchedulerHost`` in this process (tests with a fake executor; single-process mode)."""

    def __init__(self, host: SchedulerHost):
        self.host = host

    def hand_over(self, spec: TaskSpec) -> None:
        self.host.hand_over(spec)

    def cancel(self, task_uuid: str) -> bool:
        return self.host.cancel(task_uuid)

    def events(self, after: int, timeout: float) -> EventBatch:
        return self.host.events(after, timeout)

    def snapshot(self) -> Snapshot:
        return self.host.snapshot()

    def forget(self, task_uuid: str) -> None:
        self.host.forget(task_uuid)

    def close(self, *, shutdown: bool = False) -> None:
        """Disconnect; ``shutdown`` also stops the scheduler (as ``ActorClient.close``: a gateway
        that stops leaves the renders going unless told to stop them)."""
        if shutdown:
            self.host.stop()


class ActorClient:
    """The detached ``SchedulerActor`` (started on first use, found by name afterwards)."""

    #: Seconds a call may take before the actor counts as unreachable (it answers in ms).
    CALL_TIMEOUT_S = 30.0
    #: Hand-overs submitted within this window after a batch was sent go in the next batch: under
    #: a burst of submissions the actor gets one call per window, not one per task (a lone
    #: submission is sent at once). Each actor call costs the gateway 0.4-0.6 ms of CPU (a batch
    #: of up to 10 specs); 50 ms instead of 10 gave ~10% more Submit+GetResponse in
    #: benchmarks/gateway.py under a burst. A burst's tasks reach the scheduler up to 50 ms
    #: later, against seconds of rendering.
    HAND_OVER_WINDOW_S = 0.05

    def __init__(
        self,
        profiles: Mapping[str, Any],
        config: SchedulerConfig,
        *,
        name: str = DEFAULT_SCHEDULER_NAME,
        finishers: int = 1,
        finisher_cpus: float = 1.0,
        warm: list[str] | None = None,
    ):
        import ray

        self._ray = ray
        self.name = name
        self.actor: Any = (
            ray.remote(SchedulerActor)
            .options(
                name=name,
                namespace=SCHEDULER_NAMESPACE,
                get_if_exists=True,
                lifetime="detached",
                max_restarts=-1,
                max_concurrency=64,
                num_cpus=0,
            )
            .remote(profiles, config, finishers, finisher_cpus)
        )
        # An actor that already existed keeps its state; it takes this gateway's profiles.
        handle: Any = self.actor
        self._get(handle.set_profiles.remote(dict(profiles)))
        if warm:
            self._get(handle.warm_up.remote(warm))
        self._pending: list[TaskSpec] = []
        self._pending_ready = threading.Condition()
        #: Held while a batch is taken and sent, so batches and later calls reach the actor in order.
        self._send_lock = threading.Lock()
        self._closed = False
        self._sender = threading.Thread(target=self._send_loop, name="scheduler-hand-over", daemon=True)
        self._sender.start()

    def _get(self, ref: Any, timeout: float | None = None) -> Any:
        return self._ray.get(ref, timeout=timeout or self.CALL_TIMEOUT_S)

    def hand_over(self, spec: TaskSpec) -> None:
        # Fire and forget, batched: a hand-over lost with a dying actor is repeated from the store
        # at resync.
        with self._pending_ready:
            self._pending.append(spec)
            self._pending_ready.notify()

    def _flush(self) -> None:
        """Send the hand-overs not sent yet (before any call that must see them: cancel, snapshot)."""
        with self._send_lock:
            with self._pending_ready:
                batch, self._pending = self._pending, []
            if batch:
                self.actor.hand_over_many.remote(batch)

    def _send_loop(self) -> None:
        while True:
            with self._pending_ready:
                self._pending_ready.wait_for(lambda: self._pending or self._closed)
                if self._closed and not self._pending:
                    return
            try:
                self._flush()
            except Exception:  # the actor restarts: the resync hands them over again
                log.warning("hand-over to the scheduler failed; the resync repeats it", exc_info=True)
            time.sleep(self.HAND_OVER_WINDOW_S)

    def cancel(self, task_uuid: str) -> bool:
        self._flush()
        return bool(self._get(self.actor.cancel.remote(task_uuid)))

    def events(self, after: int, timeout: float) -> EventBatch:
        return self._get(self.actor.events.remote(after, timeout), timeout + self.CALL_TIMEOUT_S)

    def snapshot(self) -> Snapshot:
        self._flush()
        return self._get(self.actor.snapshot.remote())

    def forget(self, task_uuid: str) -> None:
        self.actor.forget.remote(task_uuid)

    def close(self, *, shutdown: bool = False) -> None:
        """Disconnect; ``shutdown`` also stops the scheduler and every worker it owns."""
        with self._pending_ready:
            self._closed = True
            self._pending_ready.notify()
        self._sender.join(5)
        if shutdown:
            try:
                self._get(self.actor.stop.remote(), 15)
            except Exception:  # noqa: BLE001 - already gone: nothing to stop
                pass
            self._ray.kill(self.actor, no_restart=True)


def shutdown_scheduler(name: str = DEFAULT_SCHEDULER_NAME) -> None:
    """Kill the named scheduler actor (and so its workers), if it runs."""
    import ray

    if not ray.is_initialized():
        return
    try:
        ray.kill(ray.get_actor(name, namespace=SCHEDULER_NAMESPACE), no_restart=True)
    except ValueError:
        pass
