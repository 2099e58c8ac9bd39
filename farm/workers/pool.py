"""The pool of worker actors a render runs on, and its replacement policy."""

from __future__ import annotations

import ray
from pydantic import BaseModel, ConfigDict, Field

from farm.workers.actors import AudioWorker, VideoWorker
from models.base import ModelProfile


class WorkerConfig(BaseModel):
    """How many workers to run and what each asks Ray for (pydantic: a bad value is refused
    naming the field and its bound)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Video worker actors (one chunk at a time each).
    video_workers: int = Field(default=2, ge=1)
    #: GPUs per video worker: 1 on a GPU node, 0 on a CPU-only machine.
    gpus_per_worker: float = Field(default=0.0, ge=0)
    #: Logical CPUs per actor (scheduling only).
    cpus_per_worker: float = Field(default=1.0, ge=0)
    #: torch intra-op threads in each actor (None: torch's default).
    torch_threads: int | None = Field(default=1, ge=1)
    #: Start the dedicated audio worker (profiles without audio never start it).
    audio_worker: bool = True
    #: How many dead workers the pool replaces before a render gives up.
    max_replacements: int = Field(default=8, ge=0)


class WorkerPool:
    """Video worker actors plus one audio actor, all loaded with the same profile.

    ``replace`` swaps a dead video worker for a fresh one (up to ``max_replacements`` times), so a
    lost chunk can be rendered again by the surviving or new workers.
    """

    def __init__(self, profile: ModelProfile, config: WorkerConfig | None = None):
        self.profile = profile
        self.config = config or WorkerConfig()
        self._video_cls = ray.remote(VideoWorker).options(
            num_cpus=self.config.cpus_per_worker, num_gpus=self.config.gpus_per_worker
        )
        self.video_workers = [self._new_video_worker() for _ in range(self.config.video_workers)]
        self.audio_worker = None
        if self.config.audio_worker and profile.audio_factory is not None:
            # Audio models are small next to video ones: the audio actor shares a GPU fractionally.
            audio_gpus = min(self.config.gpus_per_worker, 0.25)
            self._audio_cls = ray.remote(AudioWorker).options(num_cpus=self.config.cpus_per_worker, num_gpus=audio_gpus)
            self.audio_worker = self._audio_cls.remote(profile, self.config.torch_threads)
        self.replacements = 0

    def _new_video_worker(self):
        return self._video_cls.remote(self.profile, self.config.torch_threads)

    def wait_ready(self) -> float:
        """Block until every actor has loaded its model; returns the slowest load in seconds."""
        refs = [w.ready.remote() for w in self.video_workers]
        if self.audio_worker is not None:
            refs.append(self.audio_worker.ready.remote())
        return max(ray.get(refs))

    def replace(self, dead) -> object | None:
        """Drop ``dead`` and start a replacement; None once the replacement budget is spent."""
        if dead in self.video_workers:
            self.video_workers.remove(dead)
        if self.replacements >= self.config.max_replacements:
            return None
        self.replacements += 1
        fresh = self._new_video_worker()
        self.video_workers.append(fresh)
        return fresh

    def replace_audio(self) -> object | None:
        """Start a fresh audio actor after the old one died; None once the budget is spent."""
        if self.audio_worker is None or self.replacements >= self.config.max_replacements:
            return None
        self.replacements += 1
        self.audio_worker = self._audio_cls.remote(self.profile, self.config.torch_threads)
        return self.audio_worker

    def shutdown(self) -> None:
        """Kill every actor of the pool."""
        for actor in [*self.video_workers, self.audio_worker]:
            if actor is not None:
                ray.kill(actor)
        self.video_workers = []
        self.audio_worker = None


class InProcessPool:
    """Workers as objects of this process (``farm.render.inprocess``), for ``render_task`` without Ray.

    Starts nothing by itself: the first task builds up to ``config.video_workers`` video workers
    (and an audio worker once a result wants audio) on threads of this process as its chunks wait;
    the pool keeps them for the next task. ``config``'s Ray fields (CPUs, GPUs) do not apply.
    """

    def __init__(self, profile: ModelProfile, config: WorkerConfig | None = None):
        self.profile = profile
        self.config = config or WorkerConfig(video_workers=1)
        #: ``VideoWorker`` / ``AudioWorker`` objects with their models built.
        self.video_workers: list[VideoWorker] = []
        self.audio_worker: AudioWorker | None = None
        self.replacements = 0

    def shutdown(self) -> None:
        """Drop the workers (their models are freed with them)."""
        self.video_workers = []
        self.audio_worker = None
