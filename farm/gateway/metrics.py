"""Prometheus metrics of the farm, owned by one object.

Every metric is named ``farm_*`` and carries at most two labels whose values come from small fixed
sets (statuses, stages, gRPC codes, route templates), so a busy farm cannot blow up the number of
series. The manager and the gateway never touch ``prometheus_client`` directly; they call the
helper methods of ``FarmMetrics``, which also refuse label values outside the fixed sets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    # Types only: the gateway counts requests without importing the render layer.
    from farm.render.results import RenderResult

__all__ = ["FarmMetrics", "TASK_STATUSES", "STAGES", "DELIVERY_KINDS"]

#: Final states of a task or a result.
TASK_STATUSES = ("success", "error", "cancelled")
#: Stages a result goes through, each with its own latency histogram.
STAGES = ("queued", "render", "encode", "deliver")
#: What a delivery failure was.
DELIVERY_KINDS = ("webhook", "upload")
#: Stage latency: a queue wait or a 15 s 1080p clip on a small farm can take most of an hour.
_STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
#: One chunk of denoising: seconds on a big GPU, minutes on a CPU.
_CHUNK_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200)


def _checked(value: str, allowed: tuple[str, ...], label: str) -> str:
    if value not in allowed:
        raise ValueError(f"{label} must be one of {allowed}, got {value!r}")
    return value


class FarmMetrics:
    """Every Prometheus metric of the farm, with the helpers the manager and gateway call.

    Pass a fresh ``CollectorRegistry`` in tests (and for a second farm in one process); the
    default is a private registry too, so two instances never collide on metric names.

        >>> metrics = FarmMetrics()
        >>> metrics.task_submitted()
        >>> metrics.task_finished("success")
        >>> body, content_type = metrics.exposition()
        >>> b"farm_tasks_finished_total{status=\\"success\\"} 1.0" in body
        True
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.tasks_submitted = Counter("farm_tasks_submitted", "Tasks accepted into the queue.", registry=r)
        self.tasks_finished = Counter(
            "farm_tasks_finished", "Tasks that ended, by final status.", ["status"], registry=r
        )
        self.results_finished = Counter(
            "farm_results_finished", "Results (of numberResults) that ended, by final status.", ["status"], registry=r
        )
        self.queue_depth = Gauge("farm_queue_depth", "Tasks waiting for workers.", registry=r)
        self.stage_seconds = Histogram(
            "farm_stage_seconds", "Seconds a result spent in each stage.", ["stage"], buckets=_STAGE_BUCKETS, registry=r
        )
        self.frames_rendered = Counter("farm_frames_rendered", "Frames of finished results.", registry=r)
        self.render_fps = Gauge(
            "farm_render_frames_per_second", "Frames per wall-clock second of the last finished result.", registry=r
        )
        self.chunk_seconds = Histogram(
            "farm_chunk_seconds", "Seconds one temporal chunk took on a worker.", buckets=_CHUNK_BUCKETS, registry=r
        )
        self.workers = Gauge("farm_workers", "Render workers, by state.", ["state"], registry=r)
        self.delivery_failures = Counter(
            "farm_delivery_failures", "Uploads and webhooks that failed after every retry.", ["kind"], registry=r
        )
        self.grpc_requests = Counter(
            "farm_grpc_requests", "gRPC requests, by method and status code.", ["method", "code"], registry=r
        )
        self._grpc_children: dict[tuple[str, str], Any] = {}
        self.http_requests = Counter(
            "farm_http_requests", "HTTP requests, by route template and status code.", ["route", "code"], registry=r
        )
        self.render_failures = Counter(
            "farm_render_failures", "Results that failed to render, by error code.", ["code"], registry=r
        )
        # The scheduler's view (its periodic ``stats`` event): per worker pool (``video:<model>``,
        # ``audio:<model>``) and per API key (a fingerprint: keys are secrets).
        self.pool_workers = Gauge(
            "farm_pool_workers",
            "Worker actors per pool, by state (starting, idle, busy).",
            ["pool", "state"],
            registry=r,
        )
        self.gpu_busy_ratio = Gauge(
            "farm_gpu_busy_ratio",
            "Share of the pool's worker time spent rendering since the last report.",
            ["pool"],
            registry=r,
        )
        self.units_queued = Gauge(
            "farm_units_queued", "Units (chunks, prompts, audio) waiting, per pool.", ["pool"], registry=r
        )
        self.units_in_flight = Gauge(
            "farm_units_in_flight", "Units running on a worker, per pool.", ["pool"], registry=r
        )
        self.key_queue_depth = Gauge(
            "farm_key_queue_depth",
            "Units waiting per API key (key: the first 8 hex of its SHA-256).",
            ["key"],
            registry=r,
        )
        self.scheduling_latency = Gauge(
            "farm_scheduling_latency_seconds",
            "Seconds from a unit being ready to it running, by quantile.",
            ["quantile"],
            registry=r,
        )
        self.scheduler_cpu = Gauge(
            "farm_scheduler_seconds_per_dispatch", "Scheduler CPU seconds per dispatched unit.", registry=r
        )
        self._busy_seen: dict[str, tuple[float, float]] = {}
        # Series that exist before the first event, so dashboards and rate() see zeros, not gaps.
        for status in TASK_STATUSES:
            self.tasks_finished.labels(status)
            self.results_finished.labels(status)
        for kind in DELIVERY_KINDS:
            self.delivery_failures.labels(kind)
        for state in ("busy", "idle"):
            self.workers.labels(state)

    def task_submitted(self) -> None:
        """A task was accepted."""
        self.tasks_submitted.inc()

    def task_finished(self, status: str) -> None:
        """A task ended as ``success``, ``error`` or ``cancelled``."""
        self.tasks_finished.labels(_checked(status, TASK_STATUSES, "status")).inc()

    def result_finished(self, status: str) -> None:
        """One result of a task ended as ``success``, ``error`` or ``cancelled``."""
        self.results_finished.labels(_checked(status, TASK_STATUSES, "status")).inc()

    def render_failed(self, code: str) -> None:
        """A result failed to render; ``code`` is the JSON error code (``farm.domain.errors``)."""
        self.render_failures.labels(code).inc()

    def set_queue_depth(self, n: int) -> None:
        """Tasks now waiting in the queue."""
        self.queue_depth.set(n)

    def observe_stage(self, stage: str, seconds: float) -> None:
        """A result spent ``seconds`` in ``stage`` (queued, render, encode or deliver)."""
        self.stage_seconds.labels(_checked(stage, STAGES, "stage")).observe(max(0.0, seconds))

    def observe_result(self, result: RenderResult) -> None:
        """Count a finished result's frames and record its throughput and stage times.

        ``render`` is the result's wall time from the start of rendering to the final file (the
        latency a user waits); ``encode`` is the finisher's stitch+encode time, which overlaps it.
        """
        timings = result.timings
        self.frames_rendered.inc(result.num_frames)
        if timings.wall_s > 0:
            self.render_fps.set(result.num_frames / timings.wall_s)
        self.observe_stage("render", timings.wall_s)
        self.observe_stage("encode", timings.encode_s)

    def observe_chunk(self, seconds: float) -> None:
        """One chunk took ``seconds`` on a worker."""
        self.chunk_seconds.observe(max(0.0, seconds))

    def set_workers(self, busy: int, idle: int) -> None:
        """How many render workers are busy and idle now."""
        self.workers.labels("busy").set(busy)
        self.workers.labels("idle").set(idle)

    def scheduler_stats(self, stats: dict) -> None:
        """The scheduler's ``stats`` event (``SchedulerCore.stats``): pools, queues, latency."""
        import hashlib

        for pool, p in stats.get("pools", {}).items():
            for state in ("starting", "idle", "busy"):
                self.pool_workers.labels(pool, state).set(p.get(state, 0))
            self.units_in_flight.labels(pool).set(p.get("busy", 0))
            busy, alive = p.get("busy_s", 0.0), p.get("alive_s", 0.0)
            before = self._busy_seen.get(pool)
            self._busy_seen[pool] = (busy, alive)
            if before is not None and alive - before[1] > 0:
                self.gpu_busy_ratio.labels(pool).set(min(1.0, max(0.0, (busy - before[0]) / (alive - before[1]))))
        queued = stats.get("queued_by_pool", {})
        for pool in set(queued) | set(stats.get("pools", {})):
            self.units_queued.labels(pool).set(queued.get(pool, 0))
        for key, depth in stats.get("queued_by_key", {}).items():
            fingerprint = hashlib.sha256(str(key).encode()).hexdigest()[:8]
            self.key_queue_depth.labels(fingerprint).set(depth)
        self.scheduling_latency.labels("0.5").set(stats.get("latency_p50", 0.0))
        self.scheduling_latency.labels("0.99").set(stats.get("latency_p99", 0.0))
        if stats.get("dispatches"):
            self.scheduler_cpu.set(stats.get("dispatch_seconds", 0.0) / stats["dispatches"])
        busy_total = sum(p.get("busy", 0) for name, p in stats.get("pools", {}).items() if name.startswith("video:"))
        idle_total = sum(p.get("idle", 0) for name, p in stats.get("pools", {}).items() if name.startswith("video:"))
        self.set_workers(busy_total, idle_total)

    def delivery_failed(self, kind: str) -> None:
        """A ``webhook`` or ``upload`` failed after every retry."""
        self.delivery_failures.labels(_checked(kind, DELIVERY_KINDS, "kind")).inc()

    def grpc_request(self, method: str, code: str) -> None:
        """A gRPC call ended; ``method`` is the short name (``Submit``), ``code`` the status name (``OK``)."""
        # The labelled child is looked up once per (method, code): ``labels`` costs more than ``inc``.
        child = self._grpc_children.get((method, code))
        if child is None:
            child = self._grpc_children[(method, code)] = self.grpc_requests.labels(method, code)
        child.inc()

    def http_request(self, route: str, code: int | str) -> None:
        """An HTTP request ended; ``route`` must be the route template (``/v1/videos/{uuid}``), never the raw path."""
        self.http_requests.labels(route, str(code)).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition of every metric and its content type, for ``GET /metrics``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def names(self) -> set[str]:
        """Names of the exported metric families as they appear on ``# TYPE`` lines.

        Counters carry ``_total`` (``farm_tasks_submitted_total``); histograms are named without
        their ``_bucket``/``_sum``/``_count`` suffixes (``farm_stage_seconds``).
        """
        names = set()
        for family in self.registry.collect():
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
        return names
