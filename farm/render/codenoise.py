"""Co-denoising (``chunkMode: codenoise``): a result's windows denoised in lockstep across workers.

Independent windows disagree on the frames they share, and a crossfade of two different pictures
shows as a seam. Here every window keeps its state on a worker for the whole render and, at every
denoising step, the overlapping windows' predictions are fused before anyone steps, so the whole
clip follows one trajectory (MultiDiffusion-style) while the windows stay spread over workers::

    plan = plan_windows(480, window_frames=17, overlap_frames=5)      # balanced windows
    for every step:
        each worker predicts its windows      -> overlap slices (Ray object store)
        the driver fuses every shared latent frame: sum_i w_i * p_i, float32, ascending window i
        each worker writes the fused slices back and takes its scheduler step
    each worker decodes its windows           -> frames, stitched by the farm's ``Stitcher``

Pieces, in the order a render uses them:

- ``plan_windows``: a ``CodenoisePlan`` (a ``ClipPlan``, so the finisher's ``Stitcher`` takes it
  as is) with the windows' overlap spread evenly over the seams, the fusion weights per latent
  frame, and pixel crossfade weights that leave out each non-first window's warm-up frames (the
  first latent frame's pixels, where a causal VAE decodes from no past).
- ``OverlapFusion``: the one place overlaps are fused (the driver and the reference both call it).
- ``LockstepDriver``: runs the lockstep on ``VideoWorker`` actors; ``RayExecutor.render_codenoise``
  runs it in a thread.
- ``codenoise_reference``: the same render in one process, looping over the windows itself.

Determinism: a window's computation never depends on which worker runs it or what else that worker
holds (one window per model call, the same noise slice, the same fused values), so the frames are
bit-identical for any number of workers and equal to ``codenoise_reference`` (same torch build,
device kind and thread count). Both sides of an overlap hold bit-identical latents after every
step; the workers send a digest of every shared latent frame with each reply and the driver
compares them, failing the render (``RenderError``) on the first difference.

Failure handling: a worker lost mid-render does not end the result. Every ``checkpoint_every``
steps the workers store their windows' latents in the object store (never pulled to the driver);
on a loss the driver rewinds every window to the last checkpoint, spreads the lost worker's
windows over the survivors (a worker may own several) and carries on: same frames. Backends that
cannot resume from latents alone (multistep schedulers), or a checkpoint lost with its node,
restart from the noise instead, on the survivors. Only when no worker is left does the result
fail (``WorkerLostError``). Cancellation is checked between steps.

Torch-free at import: the scheduler imports ``plan_windows``.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ray.exceptions import RayActorError, RayTaskError

from farm.domain.errors import PlanError, RenderError, WorkerLostError
from farm.domain.planner import BlendShape, ChunkPlan, ClipPlan, plan_clip
from farm.workers.inline import InlineRef, fetch
from farm.workers.messages import CheckpointLostError, CodenoiseWork, WindowKey, WindowsReply, WindowWork

log = logging.getLogger(__name__)

#: Steps between latent checkpoints. A checkpoint is one object per window left in the object
#: store (a Wan 2.1 720p 81-frame window: 19 MB), so cheap; a loss costs at most this many steps.
DEFAULT_CHECKPOINT_EVERY = 4

#: Pixel frames a causal VAE spends warming up at the start of a window: Wan's first latent frame
#: decodes to one frame, from no past, so it is left out of the crossfade.
WARMUP_FRAMES = 1


# == planning ===================================================================================


def _ramp(length: int, shape: BlendShape) -> np.ndarray:
    """Rising weights over ``length`` frames strictly inside (0, 1), complementary to their mirror
    (the planner's ramps)."""
    x = np.arange(1, length + 1, dtype=np.float64) / (length + 1)
    return x if shape == "linear" else 0.5 - 0.5 * np.cos(np.pi * x)


def balanced_starts(latent_frames: int, window_latents: int, count: int) -> list[int]:
    """First latent frame of each of ``count`` windows of ``window_latents`` over ``latent_frames``:
    the first at 0, the last at the end, window ``i`` at ``i * span / (count - 1)`` rounded to the
    nearest latent frame (halves up), so the steps differ by at most one and the shorter ones (the
    seams with more overlap) are spread along the clip rather than piled at its end.

    >>> starts = balanced_starts(121, 5, 40)
    >>> sorted({b - a for a, b in zip(starts, starts[1:])}), [b - a for a, b in zip(starts, starts[1:])].index(2)
    ([2, 3], 19)
    """
    if count == 1:
        return [0]
    span, gaps = latent_frames - window_latents, count - 1
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(count)]


@dataclass(frozen=True, kw_only=True)
class CodenoisePlan(ClipPlan):
    """A ``ClipPlan`` for co-denoising: the chunks are the windows, ``weights`` the pixel crossfade.

    ``overlap_frames`` is the smallest overlap of the plan (the profile's); ``overlaps`` lists each
    seam's. Pass it wherever a ``ClipPlan`` goes (``FinishSpec.plan``, ``Stitcher``).
    """

    #: Per window, float32 fusion weights over its latent frames: cosine (or linear) ramps over the
    #: latent overlaps with its neighbours, the windows covering a latent frame summing to 1 there
    #: (the last of them gets ``1 - sum(others)`` in float32). 1.0 where a window is alone.
    fusion_weights: tuple[np.ndarray, ...] = field(repr=False)
    #: Pixel overlap of each seam (window i with window i+1).
    overlaps: tuple[int, ...]
    #: Frames at the start of every non-first window that get no crossfade weight.
    warmup_frames: int

    @functools.cached_property
    def fusion(self) -> OverlapFusion:
        """The plan's ``OverlapFusion``."""
        return OverlapFusion(self.chunks, self.fusion_weights)

    def seam_spans(self) -> list[tuple[int, int]]:
        """Delivered frames two or more windows cover, as inclusive ``(first, last)`` runs: where
        ``farm seams --seams`` should look (``farm.io.seams.SeamSpan`` takes them)."""
        cover = np.zeros(self.render_frames, dtype=np.int64)
        for chunk in self.chunks:
            cover[chunk.start : chunk.end] += 1
        spans, start = [], None
        for frame, shared in enumerate((cover[: self.num_frames] >= 2).tolist() + [False]):
            if shared and start is None:
                start = frame
            elif not shared and start is not None:
                spans.append((start, frame - 1))
                start = None
        return spans


def plan_windows(
    num_frames: int,
    *,
    window_frames: int,
    overlap_frames: int,
    temporal_stride: int = 4,
    blend: BlendShape = "cosine",
    warmup_frames: int = WARMUP_FRAMES,
) -> CodenoisePlan:
    """Cut ``num_frames`` into co-denoised windows, the overlap spread evenly over the seams.

    Same rules, render grid and window count as ``plan_clip`` (which checks the arguments and
    raises ``PlanError`` quoting them), but the windows' latent starts are ``balanced_starts``:
    instead of one end-aligned last window overlapping its neighbour by much more, every seam
    overlaps by at least ``overlap_frames``, the extra spread one latent frame at a time.

    >>> plan = plan_windows(96, window_frames=17, overlap_frames=5)
    >>> [c.start for c in plan.chunks], plan.overlaps
    ([0, 12, 24, 36, 44, 56, 68, 80], (5, 5, 5, 9, 5, 5, 5))

    (``plan_clip`` ends ``..., 60, 72, 80``: its last seam overlaps by 9, here the middle one does.)
    """
    if warmup_frames < 0:
        raise PlanError(f"warmup_frames must be >= 0, got {warmup_frames}")
    base = plan_clip(
        num_frames,
        window_frames=window_frames,
        overlap_frames=overlap_frames,
        temporal_stride=temporal_stride,
        blend=blend,
    )
    window = base.window_frames
    window_latents = (window - 1) // temporal_stride + 1
    starts = balanced_starts(base.latent_frames, window_latents, len(base.chunks))
    chunks = tuple(
        ChunkPlan(
            index=i,
            start=s * temporal_stride,
            num_frames=window,
            latent_start=s,
            latent_frames=window_latents,
        )
        for i, s in enumerate(starts)
    )
    overlaps = tuple(a.end - b.start for a, b in zip(chunks, chunks[1:]))
    return CodenoisePlan(
        num_frames=base.num_frames,
        render_frames=base.render_frames,
        window_frames=window,
        overlap_frames=min(overlaps, default=0),
        temporal_stride=temporal_stride,
        blend=blend,
        chunks=chunks,
        weights=_pixel_weights(chunks, base.render_frames, blend, warmup_frames),
        fusion_weights=_fusion_weights(chunks, base.latent_frames, blend),
        overlaps=overlaps,
        warmup_frames=warmup_frames,
    )


def _pixel_weights(
    chunks: Sequence[ChunkPlan], render_frames: int, blend: BlendShape, warmup: int
) -> tuple[np.ndarray, ...]:
    """Crossfade weights (float64 per window frame, summing to 1 per frame): a window's warm-up
    frames get 0, the rest of each overlap a ramp, normalised over the windows covering a frame."""
    raw = []
    for i, chunk in enumerate(chunks):
        w = np.ones(chunk.num_frames, dtype=np.float64)
        if i > 0:
            lead = chunks[i - 1].end - chunk.start
            drop = min(warmup, lead)
            w[:drop] = 0.0
            if lead > drop:
                w[drop:lead] *= _ramp(lead - drop, blend)
        if i + 1 < len(chunks):
            trail = chunk.end - chunks[i + 1].start
            fade = trail - min(warmup, trail)
            if fade:
                w[chunk.num_frames - fade :] *= _ramp(fade, blend)[::-1]
        raw.append(w)
    total = np.zeros(render_frames, dtype=np.float64)
    for chunk, w in zip(chunks, raw):
        total[chunk.start : chunk.end] += w
    return tuple(w / total[c.start : c.end] for c, w in zip(chunks, raw))


def _fusion_weights(chunks: Sequence[ChunkPlan], latent_frames: int, blend: BlendShape) -> tuple[np.ndarray, ...]:
    """Per window float32 weights over its latent frames (see ``CodenoisePlan.fusion_weights``)."""
    raw = []
    for i, chunk in enumerate(chunks):
        w = np.ones(chunk.latent_frames, dtype=np.float64)
        if i > 0:
            lead = _latent_end(chunks[i - 1]) - chunk.latent_start
            w[:lead] *= _ramp(lead, blend)
        if i + 1 < len(chunks):
            trail = _latent_end(chunk) - chunks[i + 1].latent_start
            w[chunk.latent_frames - trail :] *= _ramp(trail, blend)[::-1]
        raw.append(w)
    total = np.zeros(latent_frames, dtype=np.float64)
    for chunk, w in zip(chunks, raw):
        total[chunk.latent_start : _latent_end(chunk)] += w
    weights = [(w / total[c.latent_start : _latent_end(c)]).astype(np.float32) for c, w in zip(chunks, raw)]
    # The last window covering a shared frame takes what the others leave, in float32: the
    # weights then sum to 1 in the order the fusion adds them.
    for frame, covering in _covering(chunks).items():
        if len(covering) > 1:
            others = np.float32(0.0)
            for index in covering[:-1]:
                others = np.float32(others + weights[index][frame - chunks[index].latent_start])
            last = covering[-1]
            weights[last][frame - chunks[last].latent_start] = np.float32(1.0) - others
    return tuple(weights)


def _latent_end(chunk: ChunkPlan) -> int:
    return chunk.latent_start + chunk.latent_frames


def _covering(chunks: Sequence[ChunkPlan]) -> dict[int, list[int]]:
    """Global latent frame -> the windows covering it, ascending."""
    covering: dict[int, list[int]] = {}
    for chunk in chunks:
        for frame in range(chunk.latent_start, _latent_end(chunk)):
            covering.setdefault(frame, []).append(chunk.index)
    return covering


# == fusion =====================================================================================


class OverlapFusion:
    """Fuses the predictions of the windows sharing a latent frame: the one place it is done.

    ``shared[i]`` lists window ``i``'s local latent frames that other windows cover too; a
    window's slice is its prediction at those frames, float32 ``[1, C, len(shared[i]), h, w]``.
    ``fuse`` computes, per shared global frame, ``sum_i w_i * p_i`` in float32 over the covering
    windows in ascending order (numpy: one rounding per multiply and per add, no fused
    multiply-add, the same on every machine), and gives every covering window the same array.
    """

    def __init__(self, windows: Sequence[ChunkPlan], weights: Sequence[np.ndarray]):
        if [w.index for w in windows] != list(range(len(windows))):
            raise ValueError(f"windows must be indexed 0..{len(windows) - 1} in order")
        self.windows = tuple(windows)
        self.weights = tuple(np.asarray(w, dtype=np.float32) for w in weights)
        #: shared global frame -> [(window, position in that window's slice, weight)], ascending.
        self._terms: dict[int, list[tuple[int, int, np.float32]]] = {}
        shared: list[list[int]] = [[] for _ in windows]
        for frame, covering in sorted(_covering(windows).items()):
            if len(covering) < 2:
                continue
            terms = []
            for index in covering:
                local = frame - windows[index].latent_start
                terms.append((index, len(shared[index]), self.weights[index][local]))
                shared[index].append(local)
            self._terms[frame] = terms
        self.shared: tuple[tuple[int, ...], ...] = tuple(tuple(s) for s in shared)

    @property
    def shared_frames(self) -> int:
        """Global latent frames covered by two or more windows."""
        return len(self._terms)

    def fuse(self, slices: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
        """The fused slices, per window index with shared frames (same shape as its slice)."""
        fused_frames: dict[int, np.ndarray] = {}
        for frame, terms in self._terms.items():
            acc = None
            for index, position, weight in terms:
                term = slices[index][:, :, position] * weight
                if acc is None:
                    acc = term
                else:
                    acc += term
            fused_frames[frame] = acc
        out = {}
        for index, locals_ in enumerate(self.shared):
            if locals_:
                start = self.windows[index].latent_start
                out[index] = np.stack([fused_frames[start + local] for local in locals_], axis=2)
        return out

    def check_checksums(self, when: str, checksums: Mapping[int, Sequence[str]]) -> int:
        """Raise ``RenderError`` (saying ``when``, e.g. ``after step 3``) unless every window sharing
        a latent frame reported the same digest for it (``checksums[i]`` aligned with
        ``shared[i]``); returns the comparisons made."""
        compared = 0
        for frame, terms in self._terms.items():
            digests = {index: checksums[index][position] for index, position, _ in terms}
            if len(set(digests.values())) > 1:
                raise RenderError(
                    f"co-denoising diverged {when}: windows {sorted(digests)} hold different "
                    f"latents at latent frame {frame}"
                )
            compared += len(terms) - 1
        return compared


def assign_windows(num_windows: int, num_workers: int) -> list[tuple[int, ...]]:
    """Contiguous blocks of windows per worker, sizes differing by at most one (a worker gets none
    when there are more workers than windows), so neighbours mostly share a worker.

    >>> assign_windows(5, 2), assign_windows(2, 3)
    ([(0, 1), (2, 3, 4)], [(), (0,), (1,)])
    """
    if num_workers < 1:
        raise ValueError(f"need at least one worker, got {num_workers}")
    return [
        tuple(range(j * num_windows // num_workers, (j + 1) * num_windows // num_workers)) for j in range(num_workers)
    ]


def window_works(work: CodenoiseWork, fusion: OverlapFusion) -> list[WindowWork]:
    """The ``WindowWork`` of each window of ``work``."""
    return [
        WindowWork(
            task_uuid=work.task_uuid,
            result_index=work.result_index,
            chunk=window,
            shared=fusion.shared[window.index],
            seed=work.seed,
            width=work.width,
            height=work.height,
            num_inference_steps=work.num_inference_steps,
            guidance_scale=work.guidance_scale,
            cancel_token=work.cancel_token,
            safety_mode=work.safety_mode,
            wire_format=work.wire_format,
        )
        for window in work.windows
    ]


# == the lockstep driver ========================================================================


@dataclass(frozen=True, kw_only=True)
class LockstepStats:
    """What one lockstep render cost, logged at its end."""

    windows: int
    #: Workers that held windows at the end (after any loss).
    workers: int
    steps: int
    #: Wall seconds from the first call to the last decoded window.
    seconds: float
    #: Wall seconds of the step loop, and per step the slowest worker's model seconds, summed.
    step_seconds: float
    compute_seconds: float
    #: Bytes of prediction slices sent to the driver plus fused slices sent back.
    exchange_bytes: int
    #: Rewinds after a lost worker.
    restarts: int
    #: Shared latent frame comparisons made (each window against the first that shares the frame).
    overlap_checks: int

    @property
    def overhead_seconds(self) -> float:
        """Step-loop seconds not spent computing: round trips, exchange, fusion, waiting."""
        return max(0.0, self.step_seconds - self.compute_seconds)


@dataclass(frozen=True, kw_only=True)
class LockstepResult:
    """A finished lockstep render: per window (in window order) its meta, its frames in the object
    store and the index (into the driver's workers) of the worker that decoded it."""

    metas: tuple[Any, ...]
    frames: tuple[Any, ...] = field(repr=False)
    owners: tuple[int, ...]
    #: Indexes of the workers lost during the render (recovered from).
    lost: tuple[int, ...]
    stats: LockstepStats


class _Lost(Exception):
    def __init__(self, workers: list[int]):
        super().__init__(f"workers {workers} lost")
        self.workers = workers


@dataclass(frozen=True)
class _Checkpoint:
    #: The step to take next from these latents.
    next_step: int
    #: Window index -> object reference of its latents.
    refs: dict[int, Any]


class LockstepDriver:
    """Runs one result's windows on ``workers`` (``VideoWorker`` actor handles) in lockstep.

    ``prompt`` and ``conditioning`` are what ``VideoWorker.chunk`` takes (values or object
    references). ``on_step(steps_done)`` is called after every completed step (tests use it to
    cancel or to kill a worker at a chosen step). ``run`` returns a ``LockstepResult`` or raises:
    the worker's error (``TaskCancelledError``, ``ValueError`` for a request the model refuses),
    ``RenderError`` when overlaps diverge, ``WorkerLostError`` when no worker is left. The
    windows are dropped from the workers however it ends. ``lost`` lists the workers lost so far.
    """

    def __init__(
        self,
        workers: Sequence[Any],
        work: CodenoiseWork,
        prompt: Any,
        conditioning: Any = None,
        *,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        on_step: Callable[[int], None] | None = None,
    ):
        if not workers:
            raise ValueError("co-denoising needs at least one worker")
        if checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: never), got {checkpoint_every}")
        self._workers = list(workers)
        self._work = work
        self._prompt = prompt
        self._conditioning = conditioning
        self._checkpoint_every = checkpoint_every
        self._on_step = on_step
        self._fusion = OverlapFusion(work.windows, work.fusion_weights)
        self._works = window_works(work, self._fusion)
        render_id = uuid.uuid4().hex[:12]
        self._keys: list[WindowKey] = [(render_id, window.index) for window in work.windows]
        self.lost: list[int] = []
        self._checkpoint: _Checkpoint | None = None
        self._resumable = True
        self._exchange = 0
        self._step_seconds = 0.0
        self._compute = 0.0
        self._checks = 0
        self._steps = 0

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> LockstepResult:
        started = time.perf_counter()
        restarts = 0
        try:
            while True:
                alive = [j for j in range(len(self._workers)) if j not in self.lost]
                if not alive:
                    raise WorkerLostError(f"co-denoising {self._where}: all {len(self._workers)} workers were lost")
                blocks = assign_windows(len(self._keys), len(alive))
                owner = {index: j for j, block in zip(alive, blocks) for index in block}
                try:
                    metas, frames = self._render(owner)
                    break
                except _Lost as lost:
                    self.lost += lost.workers
                    restarts += 1
                    resume = self._checkpoint.next_step if self._checkpoint is not None else 0
                    log.warning(
                        "co-denoising %s: lost worker(s) %s, restarting %d windows on %d worker(s) from step %d",
                        self._where,
                        lost.workers,
                        len(self._keys),
                        len(alive) - len(lost.workers),
                        resume,
                    )
                except CheckpointLostError as error:
                    log.warning("co-denoising %s: %s; restarting from the noise", self._where, error)
                    self._checkpoint = None
                    restarts += 1
        finally:
            self._drop()
        stats = LockstepStats(
            windows=len(self._keys),
            workers=len(set(owner.values())),
            steps=self._steps,
            seconds=time.perf_counter() - started,
            step_seconds=self._step_seconds,
            compute_seconds=self._compute,
            exchange_bytes=self._exchange,
            restarts=restarts,
            overlap_checks=self._checks,
        )
        self._log(stats)
        return LockstepResult(
            metas=tuple(metas),
            frames=tuple(frames),
            owners=tuple(owner[i] for i in range(len(self._keys))),
            lost=tuple(self.lost),
            stats=stats,
        )

    @property
    def _where(self) -> str:
        return f"{self._work.task_uuid} result {self._work.result_index}"

    def _render(self, owner: dict[int, int]) -> tuple[list[Any], list[Any]]:
        """Begin (or resume), step to the end, decode; raises ``_Lost`` on a lost worker."""
        blocks: dict[int, list[int]] = {}
        for index, j in sorted(owner.items()):
            blocks.setdefault(j, []).append(index)
        checkpoint = self._checkpoint if self._resumable else None
        self._drop()
        total_steps = self._begin(blocks, checkpoint)
        self._lockstep(blocks, checkpoint.next_step if checkpoint is not None else 0, total_steps)
        return self._decode(blocks)

    def _begin(self, blocks: dict[int, list[int]], checkpoint: _Checkpoint | None) -> int:
        """1. Begin every window (from its noise, or from the checkpoint), check the shared frames;
        returns the number of steps."""
        replies = self._call(
            blocks,
            lambda actor, keys, indexes: actor.windows_begin.remote(
                keys,
                [self._works[i] for i in indexes],
                self._prompt,
                self._conditioning,
                [checkpoint.refs[i] for i in indexes] if checkpoint is not None else None,
            ),
        )
        total = {reply.num_steps for reply in replies.values()}
        if len(total) != 1:
            raise RenderError(f"co-denoising {self._where}: windows disagree on the number of steps: {sorted(total)}")
        self._resumable = all(reply.resumable for reply in replies.values())
        began = f"after resuming at step {checkpoint.next_step}" if checkpoint is not None else "at the start"
        self._checks += self._fusion.check_checksums(began, self._checksums(replies))
        return total.pop()

    def _lockstep(self, blocks: dict[int, list[int]], step: int, total_steps: int) -> None:
        """2. Fuse the overlap slices, step every window and predict the next step, to the end."""
        replies = self._call(blocks, lambda actor, keys, _: actor.windows_predict.remote(keys, step))
        pending: _Checkpoint | None = None
        while step < total_steps:
            started = time.perf_counter()
            slices = self._slices(replies)
            fused = self._fusion.fuse(slices)
            last = step + 1 == total_steps
            replies = self._call(
                blocks,
                functools.partial(self._submit_step, step=step, fused=fused, predict_next=not last),
            )
            self._exchange += sum(a.nbytes for a in slices.values()) + sum(a.nbytes for a in fused.values())
            self._compute += max(reply.seconds for reply in replies.values())
            self._checks += self._fusion.check_checksums(f"after step {step}", self._checksums(replies))
            step += 1
            self._steps = step
            if pending is not None:
                # Each worker ran the checkpoint call before this step: the checkpoint is complete.
                self._checkpoint, pending = pending, None
            if self._resumable and self._checkpoint_every and step % self._checkpoint_every == 0 and not last:
                pending = self._take_checkpoint(blocks, step)
            self._step_seconds += time.perf_counter() - started
            if self._on_step is not None:
                self._on_step(step)

    def _decode(self, blocks: dict[int, list[int]]) -> tuple[list[Any], list[Any]]:
        """3. Decode every window where it lives; the frames stay in the object store."""
        metas: list[Any] = [None] * len(self._keys)
        frames: list[Any] = [None] * len(self._keys)
        refs = {}
        for j, indexes in blocks.items():
            keys = [self._keys[i] for i in indexes]
            out = self._workers[j].windows_decode.options(num_returns=len(keys) + 1).remote(keys)
            refs[j] = out[0]
            for index, ref in zip(indexes, out[1:]):
                frames[index] = ref
        for j, block_metas in self._gather(refs).items():
            for index, meta in zip(blocks[j], block_metas):
                metas[index] = meta
        return metas, frames

    # -- calls ---------------------------------------------------------------------------------

    def _call(self, blocks: dict[int, list[int]], submit: Callable) -> dict[int, Any]:
        """One call per worker (``submit(actor, keys, window indexes)``), gathered."""
        refs = {j: submit(self._workers[j], [self._keys[i] for i in indexes], indexes) for j, indexes in blocks.items()}
        return self._gather(refs)

    def _gather(self, refs: dict[int, Any]) -> dict[int, Any]:
        """Every worker's answer; ``_Lost`` naming the dead workers, else the first worker error."""
        values, lost, error = {}, [], None
        for j, ref in refs.items():
            try:
                values[j] = fetch(ref)
            except RayActorError:
                lost.append(j)
            except RayTaskError as failure:
                cause = failure.cause if failure.cause is not None else failure
                error = error or cause
            except Exception as failure:  # an in-process worker's own error (InlineRef)
                if not isinstance(ref, InlineRef):
                    raise
                error = error or failure
        if isinstance(error, CheckpointLostError):
            raise error
        if lost:
            raise _Lost(lost)
        if error is not None:
            raise error
        return values

    def _submit_step(self, actor: Any, keys: list[WindowKey], indexes: list[int], *, step, fused, predict_next) -> Any:
        mine = {self._keys[i]: fused[i] for i in indexes if i in fused}
        return actor.windows_step.remote(keys, step, mine, predict_next)

    def _take_checkpoint(self, blocks: dict[int, list[int]], step: int) -> _Checkpoint:
        refs: dict[int, Any] = {}
        for j, indexes in blocks.items():
            keys = [self._keys[i] for i in indexes]
            out = self._workers[j].windows_latents.options(num_returns=len(keys)).remote(keys)
            for index, ref in zip(indexes, [out] if len(keys) == 1 else out):
                refs[index] = ref
        return _Checkpoint(next_step=step, refs=refs)

    def _slices(self, replies: dict[int, WindowsReply]) -> dict[int, np.ndarray]:
        return {key[1]: array for reply in replies.values() for key, array in reply.predictions.items()}

    def _checksums(self, replies: dict[int, WindowsReply]) -> dict[int, tuple[str, ...]]:
        return {key[1]: digests for reply in replies.values() for key, digests in reply.checksums.items()}

    def _drop(self) -> None:
        """Forget this render's windows on every live worker (fire and forget: a worker runs its
        calls in order, so a later begin finds them gone)."""
        for j, actor in enumerate(self._workers):
            if j not in self.lost:
                try:
                    actor.windows_drop.remote(self._keys)
                except Exception:  # noqa: BLE001 - a dead handle: nothing to drop
                    pass

    def _log(self, stats: LockstepStats) -> None:
        per_step = stats.exchange_bytes / max(stats.steps, 1)
        log.info(
            "co-denoised %s: %d windows on %d worker(s), %d steps in %.2f s; exchanged %.2f MB (%.2f MB/step); "
            "lockstep overhead %.1f ms/step (%.1f%% of the step loop); %d overlap checks, %d restart(s)",
            self._where,
            stats.windows,
            stats.workers,
            stats.steps,
            stats.seconds,
            stats.exchange_bytes / 1e6,
            per_step / 1e6,
            1e3 * stats.overhead_seconds / max(stats.steps, 1),
            100 * stats.overhead_seconds / stats.step_seconds if stats.step_seconds else 0.0,
            stats.overlap_checks,
            stats.restarts,
        )


def run_gang(
    actors: Sequence[Any], workers: Sequence[str], unit: Any, work: CodenoiseWork, prompt: Any, conditioning: Any
) -> tuple[list[Any], list[str]]:
    """Co-denoise ``work`` on the gang ``actors`` (named ``workers`` by the scheduler): the outcomes
    an executor reports (``Executor.render_codenoise``) and the workers lost on the way, which
    it reports after them as ``WorkerFailed``. Blocks until the render ends."""
    from farm.render.dispatch import unwrap
    from farm.render.executor import ChunkDone, UnitFailed

    driver = None
    try:
        driver = LockstepDriver(actors, work, prompt, conditioning)
        done = driver.run()
    except BaseException as error:  # noqa: BLE001 - reported as the gang's failure
        error = unwrap(error)
        lost = [workers[j] for j in driver.lost] if driver is not None else []
        worker_lost = isinstance(error, WorkerLostError)
        blamed = lost[0] if worker_lost and lost else workers[0]
        failed = UnitFailed(unit=unit, worker=blamed, error=error, worker_lost=worker_lost)
        return [failed], [w for w in lost if w != blamed]
    chunks = [
        ChunkDone(unit=unit, worker=workers[owner], meta=meta, frames=frames)
        for meta, frames, owner in zip(done.metas, done.frames, done.owners)
    ]
    return list(chunks), [workers[j] for j in done.lost]


# == the single-process reference ===============================================================


def codenoise_reference(
    backend: Any,
    plan: CodenoisePlan,
    *,
    prompt: Any,
    seed: int,
    width: int,
    height: int,
    num_inference_steps: int,
    guidance_scale: float,
    conditioning: Any = None,
    torch_threads: int | None = 1,
    wire_format: str | None = None,
) -> list[Any]:
    """Co-denoise ``plan``'s windows in this process with ``backend`` (a ``SteppedVideoBackend``,
    or a ``WanVideoBackend``): per window, its frames as a worker returns them
    (``frames_to_wire`` in ``wire_format``: ``Yuv420Frames`` by default, or ``uint8 [num_frames,
    H, W, 3]`` RGB for ``"rgb"``).

    Loops over the windows itself: every step predicts every window, fuses the shared frames with
    ``OverlapFusion``, steps every window. ``torch_threads`` is set for the call (workers run one
    thread; a matmul's rounding may depend on the count). Raises ``RenderError`` if two windows
    ever hold different latents on a shared frame."""
    import torch

    from farm.workers.actors import frames_to_wire, window_request
    from farm.workers.messages import resolve_wire_format
    from models.stepped import as_stepped

    wire = resolve_wire_format(wire_format)
    stepped = as_stepped(backend)
    fusion = plan.fusion
    work = CodenoiseWork(
        task_uuid="reference",
        result_index=0,
        windows=plan.chunks,
        fusion_weights=plan.fusion_weights,
        seed=seed,
        width=width,
        height=height,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
    )
    works = window_works(work, fusion)
    threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    try:
        with torch.inference_mode():
            states = [stepped.begin_window(window_request(stepped, w, prompt, conditioning)) for w in works]
            indexes = [torch.tensor(w.shared, dtype=torch.long) for w in works]
            for step in range(stepped.num_steps(states[0])):
                _reference_step(stepped, fusion, works, states, indexes, step)
            device = getattr(stepped, "device", None)
            return [frames_to_wire(stepped.decode(state), wire, device) for state in states]
    finally:
        torch.set_num_threads(threads)


def _reference_step(
    stepped: Any, fusion: OverlapFusion, works: Sequence[WindowWork], states: list[Any], indexes: list[Any], step: int
) -> None:
    """One lockstep step of the single-process reference: predict all, fuse, step all, check."""
    from farm.workers.actors import shared_checksums, shared_slices, write_fused
    from models.stepped import window_latents

    predictions = [stepped.predict(state, step) for state in states]
    fused = fusion.fuse({i: shared_slices(p, indexes[i]) for i, p in enumerate(predictions) if len(indexes[i])})
    for i, (state, prediction) in enumerate(zip(states, predictions)):
        write_fused(prediction, indexes[i], fused.get(i))
        stepped.step(state, step, prediction)
    digests = {i: shared_checksums(window_latents(stepped, s), w.shared) for i, (s, w) in enumerate(zip(states, works))}
    fusion.check_checksums(f"after step {step}", digests)


def stitch_windows(plan: ClipPlan, windows: Sequence[Any]) -> np.ndarray:
    """The delivered clip from every window's frames (in window order, as the workers return them:
    RGB arrays or ``Yuv420Frames``), blended by the farm's ``Stitcher`` as the finisher does:
    ``uint8 [plan.num_frames, H, W, 3]`` RGB at the native size (yuv420p planes are turned back
    into RGB with bilinear chroma, as the finisher does for ``on_frames``)."""
    import torch

    from farm.render.stitch import Stitcher, Yuv420Planes
    from kernels.yuv import yuv420p_to_rgb

    stitcher = Stitcher(plan)
    blocks = [b for i, frames in enumerate(windows) if (b := stitcher.add(i, frames)) is not None]
    rgb = [
        yuv420p_to_rgb(b.y, b.u, b.v, chroma_upsample="bilinear") if isinstance(b, Yuv420Planes) else b for b in blocks
    ]
    return torch.cat(rgb).numpy()


__all__ = [
    "DEFAULT_CHECKPOINT_EVERY",
    "WARMUP_FRAMES",
    "CodenoisePlan",
    "LockstepDriver",
    "LockstepResult",
    "LockstepStats",
    "OverlapFusion",
    "assign_windows",
    "balanced_starts",
    "codenoise_reference",
    "plan_windows",
    "run_gang",
    "stitch_windows",
    "window_works",
]
