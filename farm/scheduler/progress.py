"""Turning a task's scheduler events into ``Watch`` events and throttled progress writes."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any

from farm.domain.records import ProgressEvent
from farm.scheduler.events import SchedulerEvent

#: Progress is written to the store at most this often per result (events still stream every change).
PROGRESS_WRITE_S = 0.5


class ProgressTracker:
    """One task's progress: chunks, denoising steps and frames encoded per result.

    ``store`` needs ``set_progress(task_uuid, index, progress)``; ``publish`` takes a
    ``ProgressEvent``; ``metrics`` (optional) is told each chunk's model seconds.
    """

    def __init__(
        self,
        task_uuid: str,
        num_frames: int,
        *,
        store: Any,
        publish: Callable[[ProgressEvent], None],
        metrics: Any = None,
    ):
        self._task_uuid = task_uuid
        self._num_frames = num_frames
        self._store, self._publish, self._metrics = store, publish, metrics
        self._chunks: dict[int, tuple[int, int]] = {}
        self._steps: dict[int, tuple[int, int]] = {}
        self._frames: dict[int, int] = {}
        self._written: collections.defaultdict[int, float] = collections.defaultdict(float)
        self._encoding_announced: set[int] = set()

    def on_event(self, event: SchedulerEvent) -> None:
        index = event.result_index
        if index is None:
            return
        if event.kind == "chunk":
            self._chunks[index] = (event.done, event.total)
            if self._metrics:
                self._metrics.observe_chunk(event.seconds)
            self._publish(
                ProgressEvent(
                    task_uuid=self._task_uuid,
                    kind="chunks",
                    result_index=index,
                    chunks_done=event.done,
                    chunks_total=event.total,
                )
            )
        elif event.kind == "denoise":
            # Inside the chunks in flight: a chunk of a real model takes minutes, and all chunks of
            # a result often run at once, so chunk counts alone would sit at 0 until the end.
            self._steps[index] = (event.done, event.total)
            self._publish(
                ProgressEvent(
                    task_uuid=self._task_uuid,
                    kind="steps",
                    result_index=index,
                    extra={"stepsDone": event.done, "stepsTotal": event.total},
                )
            )
        elif event.kind == "encode":
            self._frames[index] = event.done
            if index not in self._encoding_announced or event.done == event.total:
                self._encoding_announced.add(index)
                self._publish(
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
        self._write(index, force=event.kind == "encode" and event.done == event.total)

    def _write(self, index: int, force: bool) -> None:
        # Half the weight on rendering (denoising steps, or whole chunks), half on frames encoded.
        done, total = self._chunks.get(index, (0, 1))
        steps_done, steps_total = self._steps.get(index, (0, 1))
        rendered = max(done / max(total, 1), steps_done / max(steps_total, 1))
        progress = 0.5 * rendered + 0.5 * self._frames.get(index, 0) / max(self._num_frames, 1)
        now = time.monotonic()
        if force or now - self._written[index] >= PROGRESS_WRITE_S:
            self._written[index] = now
            self._store.set_progress(self._task_uuid, index, round(min(progress, 1.0), 4))
