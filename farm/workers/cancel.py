"""Cancel flags and step progress: one tiny named actor that imports no torch.

Ray cannot interrupt a running method of a synchronous actor, so a worker asks the ``CancelFlags``
actor after each denoising step (at most every ``CANCEL_POLL_S``) whether its render was cancelled,
and reports the step in the same call; the scheduler reads the steps for progress. The actor lives
in the named namespace ``farm`` so every driver and the scheduler find the same one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import ray

from farm.domain.errors import TaskCancelledError

#: Name and Ray namespace of the ``CancelFlags`` actor.
CANCEL_FLAGS_ACTOR = "farm-cancel-flags"
CANCEL_FLAGS_NAMESPACE = "farm"

#: A worker asks the ``CancelFlags`` actor at most this often (and always after the first step):
#: real models take a second or more per step, so every step is checked; tiny CPU models take
#: ~20 ms, where asking after every step cost a fifth of a core.
CANCEL_POLL_S = 0.1


class CancelFlags:
    """Tokens of cancelled renders and the last step of each unit (wrapped by ``ray.remote``)."""

    def __init__(self) -> None:
        self._tokens: set[str] = set()
        #: token -> {(result index, chunk index): steps done}
        self._steps: dict[str, dict[tuple[int, int], int]] = {}

    def cancel(self, token: str) -> None:
        """Mark ``token``'s render as cancelled."""
        self._tokens.add(token)

    def clear(self, token: str) -> None:
        """Forget ``token`` once no unit of its render can still be running."""
        self._tokens.discard(token)
        self._steps.pop(token, None)

    def report(self, token: str, result_index: int, chunk_index: int, step: int, total: int) -> bool:
        """A chunk finished denoising step ``step`` of ``total``; returns whether its render was
        cancelled (one call per step does both)."""
        if token not in self._tokens:
            self._steps.setdefault(token, {})[(result_index, chunk_index)] = step
        return token in self._tokens

    def progress(self, tokens: Sequence[str]) -> dict[str, dict[tuple[int, int], int]]:
        """The last step reported by each chunk of each of ``tokens``' renders."""
        return {t: dict(self._steps[t]) for t in tokens if t in self._steps}

    def is_cancelled(self, token: str) -> bool:
        """Whether ``token``'s render was cancelled."""
        return token in self._tokens

    def python_modules(self) -> list[str]:
        """Loaded module names (a test checks this actor's process holds no torch)."""
        import sys

        return sorted(sys.modules)


class LocalCancelFlags(CancelFlags):
    """``CancelFlags`` for workers that are threads of this process (the in-process executor):
    the same calls, made directly, each under one lock."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def cancel(self, token: str) -> None:
        with self._lock:
            super().cancel(token)

    def clear(self, token: str) -> None:
        with self._lock:
            super().clear(token)

    def report(self, token: str, result_index: int, chunk_index: int, step: int, total: int) -> bool:
        with self._lock:
            return super().report(token, result_index, chunk_index, step, total)

    def progress(self, tokens: Sequence[str]) -> dict[str, dict[tuple[int, int], int]]:
        with self._lock:
            return super().progress(tokens)

    def is_cancelled(self, token: str) -> bool:
        with self._lock:
            return super().is_cancelled(token)


def cancel_flags():
    """The named ``CancelFlags`` actor, started on first use (no CPU reserved: it only answers).

    Detached so it is started once per cluster rather than once per render (a named actor is
    otherwise collected when the last handle goes away).
    """
    return (
        ray.remote(CancelFlags)
        .options(
            name=CANCEL_FLAGS_ACTOR,
            namespace=CANCEL_FLAGS_NAMESPACE,
            get_if_exists=True,
            lifetime="detached",
            num_cpus=0,
            max_concurrency=64,
        )
        .remote()
    )


def shutdown_cancel_flags() -> None:
    """Kill the detached ``CancelFlags`` actor, if any."""
    if not ray.is_initialized():
        return
    try:
        ray.kill(ray.get_actor(CANCEL_FLAGS_ACTOR, namespace=CANCEL_FLAGS_NAMESPACE))
    except ValueError:  # never started
        pass


def step_callback(
    token: str | None, unit: tuple[int, int] | None = None, local: LocalCancelFlags | None = None
) -> Callable[[int, int], None] | None:
    """A backend step callback raising ``TaskCancelledError`` once ``token``'s render is cancelled.

    With ``unit`` (result index, chunk index) the same call reports the unit's denoising step, so
    the scheduler can show progress inside chunks. ``local``: ask these in-process flags instead
    of the named actor (the in-process executor; no Ray call).
    """
    if token is None:
        return None
    if local is not None:
        ask, interval = local, 0.0  # a lock, no round trip: every step is asked
    else:
        actor = cancel_flags()
        ask, interval = _RemoteFlags(actor), CANCEL_POLL_S
    last = [0.0]

    def on_step(step: int, total: int) -> None:
        now = time.monotonic()
        if step and step + 1 < total and now - last[0] < interval:
            return
        last[0] = now
        if unit is None:
            cancelled = ask.is_cancelled(token)
        else:
            cancelled = ask.report(token, unit[0], unit[1], step + 1, total)
        if cancelled:
            raise TaskCancelledError(f"render {token} cancelled at step {step + 1}/{total}")

    return on_step


class _RemoteFlags:
    """The named ``CancelFlags`` actor's two questions, asked as blocking calls."""

    def __init__(self, actor) -> None:
        self._actor = actor

    def is_cancelled(self, token: str) -> bool:
        return ray.get(self._actor.is_cancelled.remote(token))

    def report(self, token: str, result_index: int, chunk_index: int, step: int, total: int) -> bool:
        return ray.get(self._actor.report.remote(token, result_index, chunk_index, step, total))
