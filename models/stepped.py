"""Step-by-step access to a video backend, for co-denoising windows in lockstep.

``VideoBackend.render_chunk`` runs a whole denoising loop in one call. Co-denoising (``chunkMode:
codenoise``) needs to stop between the model's prediction and the scheduler step of every window,
so that the overlapping windows' predictions can be fused first. A ``SteppedVideoBackend`` splits
``render_chunk`` at exactly those two points::

    state = backend.begin_window(request)              # the window's latents, schedule, conditioning
    for i in range(backend.num_steps(state)):
        prediction = backend.predict(state, i)         # guided (after classifier-free guidance)
        ...                                            # the driver fuses overlap slices here
        backend.step(state, i, prediction)             # scheduler step, in place
    frames = backend.decode(state)                     # uint8 [num_frames, H, W, 3]

With nothing fused in between, that loop gives bit-identical frames to ``render_chunk`` on the
same request: ``render_chunk`` is that loop.

Contract, which every implementation keeps so that results do not depend on how windows are
spread over workers:

- **One window per call.** Two windows are never batched together: batching changes the
  reduction order of the model's kernels, hence the bits.
- **Deterministic.** The same request and the same sequence of predictions give bit-identical
  latents and frames, in any process, on any worker.
- **Stateless steps** (``resumable`` backends). ``predict`` and ``step`` read the step index they
  are given; the state holds no step counter. So a checkpoint is just ``latents(state)`` after step
  ``k``: restoring it is ``begin_window(dataclasses.replace(request, latents=saved))`` and carrying
  on at step ``k + 1``. A backend whose scheduler keeps a history (multistep solvers) says
  ``resumable = False`` and steps strictly in order.
- **Owned tensors.** ``predict`` returns a fresh float32 tensor the caller may modify (the driver
  writes the fused overlap into it); ``step`` does not keep a reference to it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from models.base import ChunkRequest, VideoBackend


class WindowState(Protocol):
    """One window's denoising state: latents, schedule and conditioning, owned by one backend.

    Backend-specific and opaque to the driver, which reads it only through the backend's methods;
    it lives in the worker process for the whole render and never travels (only prediction slices
    and latent checkpoints do).
    """

    #: The window's index in the clip plan (``ChunkRequest.chunk_index``), for logs and errors.
    chunk_index: int


@runtime_checkable
class SteppedVideoBackend(VideoBackend, Protocol):
    """A ``VideoBackend`` whose denoising loop the caller drives one step at a time.

    It keeps everything a ``VideoBackend`` has (``encode_prompt``, ``latent_frame_shape``,
    ``render_chunk`` for the non-lockstep modes) and adds the steps of the loop.
    """

    #: Whether restoring a window from ``latents(state)`` after step ``k`` and carrying on at step
    #: ``k + 1`` gives bit-identical results to the uninterrupted run. True for single-step
    #: schedulers (flow-matching Euler); a multistep scheduler also keeps past predictions, so a
    #: lost worker's result restarts from its noise instead.
    resumable: bool

    def begin_window(self, request: ChunkRequest) -> WindowState:
        """Start a window from ``request.latents`` (its slice of the result's global seeded noise,
        float32 ``[1, C, T, h, w]``, copied: the caller's tensor is never written).

        Sets up the scheduler for ``request.num_inference_steps`` and encodes the conditioning.
        Raises ``ValueError`` for a request the model cannot render, as ``render_chunk`` would.
        """
        ...

    def num_steps(self, state: WindowState) -> int:
        """Denoising steps of the window (steps are numbered ``0 .. num_steps - 1``)."""
        ...

    def predict(self, state: WindowState, step: int) -> torch.Tensor:
        """The model's guided prediction at ``step`` (after classifier-free guidance), in the
        parametrisation ``step`` consumes (a flow velocity for flow-matching models).

        Float32, the shape of the window's frames (``window_latents``), a new tensor the caller
        owns. Changes nothing ``step`` does not read back (a backend with leading slots keeps
        their part of the prediction for the ``step`` that follows).
        """
        ...

    def step(self, state: WindowState, step: int, prediction: torch.Tensor) -> None:
        """Take the scheduler step ``step`` with ``prediction`` (possibly fused with the
        neighbours' over the overlaps), updating the latents in place."""
        ...

    def latents(self, state: WindowState) -> torch.Tensor:
        """The current latents, float32 ``[1, C, T, h, w]`` (a view: copy before keeping it): the
        window's frames, after any leading slots the state keeps (``reference_slots``, VACE's
        reference images). A checkpoint; ``window_latents`` gives the frames for the checksums."""
        ...

    def decode(self, state: WindowState) -> np.ndarray:
        """Decode the current latents: ``uint8 [num_frames, height, width, 3]`` RGB at the
        request's size (call it after the last step)."""
        ...


def window_latents(backend: SteppedVideoBackend, state: WindowState) -> torch.Tensor:
    """The latents of the window's own frames: ``backend.latents(state)`` without the leading
    slots a state may keep (``state.reference_slots``; what ``predict`` returns has this shape)."""
    latents = backend.latents(state)
    slots = int(getattr(state, "reference_slots", 0))
    return latents[:, :, slots:] if slots else latents


def as_stepped(backend: VideoBackend) -> SteppedVideoBackend:
    """``backend`` itself when it is stepped already, the stepped twin of a ``WanVideoBackend``
    (``models.wan_stepped``, same pipeline and weights), else ``ValueError`` naming the backend."""
    if isinstance(backend, SteppedVideoBackend):
        return backend
    from models.wan import WanVideoBackend

    if isinstance(backend, WanVideoBackend):
        from models.wan_stepped import WanSteppedBackend

        return WanSteppedBackend.from_backend(backend)
    raise ValueError(f"{type(backend).__name__} cannot be denoised step by step, so it cannot co-denoise")
