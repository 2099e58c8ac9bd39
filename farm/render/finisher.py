"""Finishing a result: stitch its chunks in order, resize to the output size, encode, write the file.

Chunks arrive at the model's native size, as the workers send them: yuv420p planes (the default)
or RGB (``wire_format="rgb"``, which ``wire_format_for`` gives MOV and sequential results). Both are stitched and resized in that
representation: planes are blended plane by plane, resized plane by plane (Y to the output size,
U and V to half of it) and handed to the encoder as they are; RGB goes through the encoder's
swscale conversion as before. The resize happens here, not on the worker, because the output is
usually larger than the native size (720p native to 1080p output: 2.25x the pixels, which would
more than undo the halving of yuv420p on the wire) and because a sequential chunk's tail must
stay at the native size to condition the next chunk.

``FinisherCore`` holds any number of open results, each with a ``Stitcher`` and a
``ResultEncoder``; every call is synchronous and a result's calls must come in order (chunks in any
order of index, then ``finish``). Two ways to run it:

* ``FinisherActor`` (Ray actor on a CPU): the gateway's farm. The scheduler calls it with the
  chunks' object references, so frames go from the video workers to the finisher through the object
  store and never through the scheduler or the gateway. A synchronous actor runs calls in
  submission order, which is the order a result needs. ``ActorFinishing`` spreads results over a
  few of them (the least busy first).
* ``LocalFinishing``: one thread per result in the calling process (``farm render``, the Python
  API, which also offers ``on_frames``).

Both report ``Encoded`` (frames written so far) after each chunk and ``Finished`` at the end.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from farm.render.executor import Encoded, Finished, FinishedFile, FinishSpec, ResultKey

# PyAV and torch (the encoder, the stitcher's blend) load on first use: the scheduler imports this
# module to start finisher actors, and the control plane stays free of them.

log = logging.getLogger(__name__)

#: ``(result_index, first_frame_index, uint8 [n, height, width, 3])`` for every final frame: RGB
#: torch tensors at the output size (yuv420p frames are turned back into RGB for it, with bilinear
#: chroma, only when a callback is set).
FramesCallback = Callable[[int, int, Any], None]


@dataclass
class _Open:
    spec: FinishSpec
    stitcher: Any
    encoder: Any
    encode_seconds: float = 0.0
    activity: list[tuple[float, float]] = field(default_factory=list)


class FinisherCore:
    """Stitches, resizes and encodes results, several at once; each call is synchronous."""

    def __init__(self, on_frames: FramesCallback | None = None, torch_threads: int | None = None):
        self._open: dict[ResultKey, _Open] = {}
        self._on_frames = on_frames
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)

    def open(self, key: ResultKey, spec: FinishSpec) -> None:
        """Start the result's file (a hidden temporary until ``finish``)."""
        from pathlib import Path

        from farm.io.encode import ResultEncoder
        from farm.render.stitch import Stitcher

        Path(spec.path).parent.mkdir(parents=True, exist_ok=True)
        encoder = ResultEncoder(
            spec.path,
            output_format=spec.output_format,
            quality=spec.quality,
            width=spec.width,
            height=spec.height,
            fps=spec.fps,
            audio=spec.audio,
            audio_channels=spec.audio_channels,
            expected_frames=spec.plan.num_frames - spec.lead_frames,
        )
        self._open[key] = _Open(spec=spec, stitcher=Stitcher(spec.plan), encoder=encoder)

    def add_chunk(self, key: ResultKey, chunk_index: int, frames: Any) -> int:
        """Take a rendered chunk (uint8 RGB ``[n, H, W, 3]`` or ``Yuv420Frames``, at the native
        size); write every frame that became final. Returns frames written."""
        state = self._open[key]
        started, started_at = time.perf_counter(), time.time()
        try:
            spec = state.spec
            first = state.stitcher.frames_emitted
            final = state.stitcher.add(chunk_index, frames)
            lead = spec.lead_frames
            if final is not None and first < lead:  # an extended video's own tail
                drop = min(lead - first, len(final))
                final, first = final[drop:], first + drop
            if final is not None and len(final):
                self._write(key, state, first - lead, final)
            return state.stitcher.frames_emitted - lead
        except BaseException:
            self.abort(key)
            raise
        finally:
            state.encode_seconds += time.perf_counter() - started
            state.activity.append((started_at, time.time()))

    def _write(self, key: ResultKey, state: _Open, first: int, final: Any) -> None:
        """Resize final frames (RGB, or ``Yuv420Planes``) to the output size and encode them."""
        from farm.render.stitch import Yuv420Planes

        spec = state.spec
        if isinstance(final, Yuv420Planes):
            from kernels.resize import resize_yuv420p

            y, u, v = resize_yuv420p(final.y, final.u, final.v, spec.width, spec.height)
            if self._on_frames is not None:
                from kernels.yuv import yuv420p_to_rgb

                self._on_frames(key[1], first, yuv420p_to_rgb(y, u, v, chroma_upsample="bilinear"))
            state.encoder.write_yuv420p(y, u, v)
            return
        from kernels.resize import resize_frames

        out = resize_frames(final, spec.width, spec.height)
        if self._on_frames is not None:
            self._on_frames(key[1], first, out)
        state.encoder.write_frames(out)

    def add_audio(
        self, key: ResultKey, samples: np.ndarray | None = None, sample_rate: int | None = None, carried: Any = None
    ) -> None:
        """Set the result's audio: generated samples, or the carried track of ``carried`` (a
        ``ClipConditioning``)."""
        state = self._open[key]
        if carried is not None:
            samples, sample_rate = carried.carried_audio
        try:
            state.encoder.set_audio(samples, sample_rate)
        except BaseException:
            self.abort(key)
            raise

    def finish(self, key: ResultKey) -> FinishedFile:
        """Close the file (atomic rename) once every frame and the audio are in."""
        state = self._open.pop(key)
        started, started_at = time.perf_counter(), time.time()
        try:
            path = state.encoder.close()
        except BaseException:
            state.encoder.abort()
            raise
        state.encode_seconds += time.perf_counter() - started
        state.activity.append((started_at, time.time()))
        return FinishedFile(
            path=str(path),
            encode_seconds=state.encode_seconds,
            frames=state.encoder.frames_written,
            activity=tuple(state.activity),
        )

    def abort(self, key: ResultKey) -> None:
        """Drop the result's temporary file (unknown keys are ignored)."""
        state = self._open.pop(key, None)
        if state is not None:
            state.encoder.abort()

    def open_results(self) -> int:
        """Results open here (the least busy finisher gets the next one)."""
        return len(self._open)

    def python_modules(self) -> list[str]:
        """Loaded module names (tests)."""
        import sys

        return sorted(sys.modules)


class FinisherActor(FinisherCore):
    """``FinisherCore`` as a Ray actor (wrapped by ``ray.remote`` with one CPU)."""

    def add_chunk(self, key: ResultKey, chunk_index: int, frames: Any) -> int:  # type: ignore[override]  # same signature; Ray resolves the reference
        return super().add_chunk(key, chunk_index, frames)

    def ready(self) -> bool:
        return True


class ActorFinishing:
    """Results finished by ``count`` ``FinisherActor`` s; completions come back through ``track``."""

    def __init__(self, track: Callable[[Any, str, Any], None], *, count: int = 1, cpus: float = 1.0):
        import ray

        self._ray = ray
        self._track = track
        cls = ray.remote(FinisherActor).options(num_cpus=cpus, max_restarts=0)
        self._actors = [cls.remote(None, 1) for _ in range(max(1, count))]
        self._load = [0] * len(self._actors)
        self._of: dict[ResultKey, int] = {}

    def open(self, key: ResultKey, spec: FinishSpec) -> None:
        i = min(range(len(self._actors)), key=lambda j: self._load[j])
        self._of[key] = i
        self._load[i] += 1
        self._track(self._actors[i].open.remote(key, spec), "opened", key)

    def add_chunk(self, key: ResultKey, chunk_index: int, frames: Any) -> None:
        i = self._of.get(key)
        if i is not None:
            self._track(self._actors[i].add_chunk.remote(key, chunk_index, frames), "encoded", key)

    def add_audio(self, key: ResultKey, audio: Any, carried: Any) -> None:
        i = self._of.get(key)
        if i is None:
            return
        if carried is not None:
            ref = self._actors[i].add_audio.remote(key, None, None, carried)
        else:
            samples, rate = audio  # the samples' reference stays top-level: Ray resolves it
            ref = self._actors[i].add_audio.remote(key, samples, rate)
        self._track(ref, "opened", key)

    def finish(self, key: ResultKey) -> None:
        i = self._of.get(key)
        if i is not None:
            self._track(self._actors[i].finish.remote(key), "finished", key)

    def abort(self, key: ResultKey) -> None:
        i = self._of.pop(key, None)
        if i is not None:
            self._load[i] -= 1
            self._actors[i].abort.remote(key)

    def forget(self, key: ResultKey) -> None:
        i = self._of.pop(key, None)
        if i is not None:
            self._load[i] -= 1

    def finished(self, key: ResultKey) -> None:
        self.forget(key)

    def shutdown(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []


class LocalFinishing:
    """Results finished by one thread each in this process; outcomes go to ``report``."""

    _END = object()

    def __init__(self, report: Callable[[Any], None], *, on_frames: FramesCallback | None = None):
        self._report = report
        self._core = FinisherCore(on_frames=on_frames)
        self._inboxes: dict[ResultKey, queue.SimpleQueue] = {}
        self._aborted: set[ResultKey] = set()
        self._threads: list[threading.Thread] = []

    def open(self, key: ResultKey, spec: FinishSpec) -> None:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inboxes[key] = inbox
        self._aborted.discard(key)
        inbox.put(("open", spec))
        thread = threading.Thread(target=self._run, args=(key, inbox), name=f"finisher-{key[1]}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def add_chunk(self, key: ResultKey, chunk_index: int, frames: Any) -> None:
        if key in self._inboxes:
            self._inboxes[key].put(("chunk", (chunk_index, frames)))

    def add_audio(self, key: ResultKey, audio: Any, carried: Any) -> None:
        if key in self._inboxes:
            self._inboxes[key].put(("audio", (audio, carried)))

    def finish(self, key: ResultKey) -> None:
        inbox = self._inboxes.pop(key, None)
        if inbox is not None:
            inbox.put(("finish", None))

    def abort(self, key: ResultKey) -> None:
        inbox = self._inboxes.pop(key, None)
        if inbox is not None:
            self._aborted.add(key)
            inbox.put(("abort", None))

    def forget(self, key: ResultKey) -> None:
        self._inboxes.pop(key, None)

    def shutdown(self, timeout: float = 30.0) -> None:
        """Abort what is still open and wait for every finisher thread: when this returns, no
        partial file of an aborted or refused result is left behind."""
        for key in list(self._inboxes):
            self.abort(key)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _run(self, key: ResultKey, inbox: queue.SimpleQueue) -> None:
        import ray

        core = self._core
        try:
            while True:
                kind, item = inbox.get()
                if key in self._aborted and kind != "abort":
                    continue
                if kind == "open":
                    core.open(key, item)
                elif kind == "chunk":
                    index, ref = item
                    frames = ray.get(ref) if isinstance(ref, ray.ObjectRef) else ref
                    done = core.add_chunk(key, index, frames)
                    self._report(Encoded(task_uuid=key[0], result_index=key[1], frames_done=done))
                elif kind == "audio":
                    audio, carried = item
                    if carried is not None:
                        carried = ray.get(carried) if isinstance(carried, ray.ObjectRef) else carried
                        core.add_audio(key, carried=carried)
                    else:
                        samples, rate = audio
                        samples = ray.get(samples) if isinstance(samples, ray.ObjectRef) else samples
                        core.add_audio(key, samples, rate)
                elif kind == "finish":
                    self._report(Finished(task_uuid=key[0], result_index=key[1], file=core.finish(key)))
                    return
                elif kind == "abort":
                    core.abort(key)
                    self._aborted.discard(key)
                    return
        except BaseException as error:  # noqa: BLE001 - reported to the scheduler; the file is removed
            core.abort(key)
            if key not in self._aborted:
                self._report(Finished(task_uuid=key[0], result_index=key[1], error=error))
