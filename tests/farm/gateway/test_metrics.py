"""FarmMetrics: the helpers move the right series, and the exposition is valid Prometheus text."""

from __future__ import annotations

import doctest
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import farm.gateway.metrics
from farm.gateway.metrics import FarmMetrics
from farm.render.results import RenderResult, ResultTimings

EXPECTED_NAMES = {
    "farm_tasks_submitted_total",
    "farm_tasks_finished_total",
    "farm_results_finished_total",
    "farm_queue_depth",
    "farm_stage_seconds",
    "farm_frames_rendered_total",
    "farm_render_frames_per_second",
    "farm_chunk_seconds",
    "farm_workers",
    "farm_delivery_failures_total",
    "farm_grpc_requests_total",
    "farm_http_requests_total",
    "farm_render_failures_total",
    "farm_pool_workers",
    "farm_gpu_busy_ratio",
    "farm_units_queued",
    "farm_units_in_flight",
    "farm_key_queue_depth",
    "farm_scheduling_latency_seconds",
    "farm_scheduler_seconds_per_dispatch",
}

#: Two of the scheduler's periodic stats reports (``SchedulerCore.stats``), 2 s apart.
STATS = [
    {
        "pools": {"video:m": {"starting": 1, "idle": 1, "busy": 2, "busy_s": 10.0, "alive_s": 20.0}},
        "queued_by_pool": {"video:m": 5},
        "queued_by_key": {"secret-key": 5},
        "latency_p50": 0.004,
        "latency_p99": 0.05,
        "dispatches": 40,
        "dispatch_seconds": 0.08,
    },
    {
        "pools": {"video:m": {"starting": 0, "idle": 0, "busy": 4, "busy_s": 17.0, "alive_s": 28.0}},
        "queued_by_pool": {"video:m": 3},
        "queued_by_key": {"secret-key": 3},
        "latency_p50": 0.004,
        "latency_p99": 0.05,
        "dispatches": 60,
        "dispatch_seconds": 0.12,
    },
]


def sample(metrics: FarmMetrics, name: str, **labels) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


def busy_metrics() -> FarmMetrics:
    """Metrics after a small, realistic sequence of events."""
    metrics = FarmMetrics(CollectorRegistry())
    for _ in range(3):
        metrics.task_submitted()
    metrics.task_finished("success")
    metrics.task_finished("error")
    metrics.result_finished("success")
    metrics.render_failed("workerLost")
    metrics.set_queue_depth(7)
    metrics.observe_stage("queued", 2.5)
    metrics.observe_stage("deliver", 0.3)
    metrics.observe_chunk(12.0)
    metrics.observe_chunk(40.0)
    for stats in STATS:  # the scheduler's reports (they set farm_workers too; the call below wins)
        metrics.scheduler_stats(stats)
    metrics.set_workers(busy=3, idle=1)
    metrics.delivery_failed("webhook")
    metrics.grpc_request("Submit", "OK")
    metrics.grpc_request("Submit", "RESOURCE_EXHAUSTED")
    metrics.http_request("/v1", 200)
    metrics.observe_result(
        RenderResult(
            index=0,
            seed=1,
            video_uuid="v",
            path=Path("/tmp/v.mp4"),
            output_format="MP4",
            num_frames=160,
            width=848,
            height=480,
            fps=32,
            has_audio=False,
            chunks=3,
            timings=ResultTimings(model_s=30.0, audio_s=0.0, encode_s=4.0, wall_s=20.0),
        )
    )
    return metrics


def test_helpers_move_their_series():
    metrics = busy_metrics()
    assert sample(metrics, "farm_tasks_submitted_total") == 3
    assert sample(metrics, "farm_tasks_finished_total", status="success") == 1
    assert sample(metrics, "farm_tasks_finished_total", status="error") == 1
    assert sample(metrics, "farm_tasks_finished_total", status="cancelled") == 0
    assert sample(metrics, "farm_results_finished_total", status="success") == 1
    assert sample(metrics, "farm_render_failures_total", code="workerLost") == 1
    assert sample(metrics, "farm_queue_depth") == 7
    assert sample(metrics, "farm_stage_seconds_count", stage="queued") == 1
    assert sample(metrics, "farm_stage_seconds_sum", stage="queued") == 2.5
    assert sample(metrics, "farm_stage_seconds_bucket", stage="deliver", le="0.5") == 1
    assert sample(metrics, "farm_chunk_seconds_count") == 2
    assert sample(metrics, "farm_chunk_seconds_sum") == 52.0
    assert sample(metrics, "farm_workers", state="busy") == 3
    assert sample(metrics, "farm_workers", state="idle") == 1
    assert sample(metrics, "farm_delivery_failures_total", kind="webhook") == 1
    assert sample(metrics, "farm_delivery_failures_total", kind="upload") == 0
    assert sample(metrics, "farm_grpc_requests_total", method="Submit", code="OK") == 1
    assert sample(metrics, "farm_grpc_requests_total", method="Submit", code="RESOURCE_EXHAUSTED") == 1
    assert sample(metrics, "farm_http_requests_total", route="/v1", code="200") == 1
    # observe_result: 160 frames in 20 s of wall time -> 8 fps; render and encode stages observed.
    assert sample(metrics, "farm_frames_rendered_total") == 160
    assert sample(metrics, "farm_render_frames_per_second") == 8.0
    assert sample(metrics, "farm_stage_seconds_sum", stage="render") == 20.0
    assert sample(metrics, "farm_stage_seconds_sum", stage="encode") == 4.0
    # Stage buckets reach an hour, so a long queue wait is not lumped into +Inf.
    assert sample(metrics, "farm_stage_seconds_bucket", stage="queued", le="3600.0") == 1


def test_label_values_outside_the_fixed_sets_are_refused():
    metrics = FarmMetrics()
    with pytest.raises(ValueError, match="status must be one of"):
        metrics.task_finished("done")
    with pytest.raises(ValueError, match="stage must be one of"):
        metrics.observe_stage("upload", 1.0)
    with pytest.raises(ValueError, match="kind must be one of"):
        metrics.delivery_failed("email")


def test_two_instances_do_not_collide():
    first, second = FarmMetrics(), FarmMetrics()
    first.task_submitted()
    assert sample(first, "farm_tasks_submitted_total") == 1
    assert sample(second, "farm_tasks_submitted_total") == 0


def test_names_lists_every_family_with_the_farm_prefix():
    assert FarmMetrics().names() == EXPECTED_NAMES


def test_exposition_parses():
    body, content_type = busy_metrics().exposition()
    assert content_type.startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(body.decode())}
    # The parser names counters without "_total"; every family we define is there.
    for name in EXPECTED_NAMES:
        assert name.removesuffix("_total") in families, name
    assert all(name.startswith("farm_") for name in families)
    submitted = families["farm_tasks_submitted"]
    assert submitted.type == "counter"
    assert [s.value for s in submitted.samples if s.name == "farm_tasks_submitted_total"] == [3.0]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_check_metrics_passes():
    for metrics in (FarmMetrics(), busy_metrics()):
        body, _ = metrics.exposition()
        checked = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
        assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
        # promtool exits 0 on some lint findings; it prints them, and we want none.
        assert checked.stdout.strip() == b"" and checked.stderr.strip() == b"", checked.stdout + checked.stderr


def test_docstring_examples():
    assert doctest.testmod(farm.gateway.metrics).failed == 0


def test_scheduler_stats_give_utilisation_queues_and_a_key_fingerprint_not_the_key():
    metrics = busy_metrics()
    # 7 busy worker-seconds over 8 alive worker-seconds between the two reports.
    assert sample(metrics, "farm_gpu_busy_ratio", pool="video:m") == pytest.approx(7 / 8)
    assert sample(metrics, "farm_units_queued", pool="video:m") == 3
    assert sample(metrics, "farm_pool_workers", pool="video:m", state="busy") == 4
    assert sample(metrics, "farm_scheduling_latency_seconds", quantile="0.99") == pytest.approx(0.05)
    body = metrics.exposition()[0].decode()
    assert "secret-key" not in body and 'farm_key_queue_depth{key="' in body
