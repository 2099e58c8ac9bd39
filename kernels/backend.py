"""Which implementation of a frame kernel runs: the torch reference or its Triton twin.

Every public kernel (``blend_frames``, ``resize_frames``, ``rgb_to_yuv420p``) takes a keyword-only
``backend``:

* ``"auto"`` (the default): Triton when the frames are CUDA tensors and ``triton`` imports, the
  torch reference otherwise (CPU tensors, or no ``triton`` installed);
* ``"torch"``: always the torch reference;
* ``"triton"``: always the Triton twin. On CPU tensors this only works under Triton's
  interpreter (``TRITON_INTERPRET=1`` set before :mod:`kernels.triton_kernels` is first imported
  and while its kernels run), which is how the tests check the kernels without a GPU.

The environment variable ``FARM_KERNEL_BACKEND`` (same three values) replaces ``"auto"`` when no
``backend`` is passed, so a whole process can be switched without touching call sites.

``import kernels`` never imports triton: it is loaded on the first Triton call.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

import torch

Backend = Literal["auto", "torch", "triton"]

#: Environment variable that sets the default backend of every kernel.
BACKEND_ENV = "FARM_KERNEL_BACKEND"
#: Triton's own switch for its CPU interpreter: read when the kernels are decorated (imported)
#: and again by ``triton.language`` while they run.
TRITON_INTERPRET_ENV = "TRITON_INTERPRET"

_BACKENDS = ("auto", "torch", "triton")


def triton_installed() -> bool:
    """Whether ``import triton`` would succeed (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: Backend | None, frames: torch.Tensor) -> Literal["torch", "triton"]:
    """The implementation to run for ``frames``: ``backend``, else ``$FARM_KERNEL_BACKEND``, else auto.

    >>> resolve_backend("torch", torch.zeros(1))
    'torch'
    >>> resolve_backend("auto", torch.zeros(1))  # CPU tensors: the torch reference
    'torch'
    """
    source = "backend"
    if backend is None:
        backend, source = os.environ.get(BACKEND_ENV, "auto") or "auto", BACKEND_ENV
    if backend not in _BACKENDS:
        raise ValueError(f"{source} must be one of {_BACKENDS} (received: {backend!r})")
    if backend == "auto":
        return "triton" if frames.is_cuda and triton_installed() else "torch"
    if backend == "triton":
        if not triton_installed():
            raise ValueError(f"{source}='triton' needs the triton package (pip install triton)")
        # Non-CUDA tensors are refused by kernels.triton_kernels unless it was imported under
        # the interpreter: only that module knows how its kernels were decorated.
    return backend
