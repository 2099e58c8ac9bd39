"""Run the Triton twins on CPU tensors under Triton's interpreter.

``@triton.jit`` picks the interpreter when ``kernels.triton_kernels`` is first imported and
``triton.language`` checks it again while a kernel runs, so ``TRITON_INTERPRET=1`` is set around
every test in this folder (and only there: the rest of the session never sees it). The torch
references ignore it.
"""

import pytest


@pytest.fixture(autouse=True)
def triton_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def triton_kernels():
    """``kernels.triton_kernels``, loaded under the interpreter (skips when triton is missing)."""
    pytest.importorskip("triton")
    import kernels.triton_kernels as module

    if not module.INTERPRETED:
        pytest.skip("kernels.triton_kernels was imported before TRITON_INTERPRET=1 was set")
    return module
