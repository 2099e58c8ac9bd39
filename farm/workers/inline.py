"""Worker objects on threads of this process, called the way Ray actor handles are.

The in-process executor (``farm.render.inprocess``) runs ``VideoWorker`` objects on a thread each.
Code written against actor handles (the co-denoising lockstep driver) calls them through
``InlineActor``: ``handle.method.remote(*args)`` queues the call on the worker's thread and returns
an ``InlineRef``; ``handle.method.options(num_returns=n).remote(...)`` returns ``n`` of them, one per
item of the tuple the method returns. ``fetch`` reads either kind of reference: an ``InlineRef``
raises the worker's own exception, a Ray reference goes through ``ray.get``.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class InlineRef:
    """The pending result of one call on an in-process worker (item ``index`` of a tuple result)."""

    __slots__ = ("_future", "_index")

    def __init__(self, future: Future, index: int | None = None):
        self._future, self._index = future, index

    def get(self, timeout: float | None = None) -> Any:
        """The value, once the call has run; raises what the call raised."""
        value = self._future.result(timeout)
        return value if self._index is None else value[self._index]


class _InlineMethod:
    def __init__(self, thread: ThreadPoolExecutor, target: Any, name: str, num_returns: int = 1):
        self._thread, self._target, self._name, self._num_returns = thread, target, name, num_returns

    def options(self, *, num_returns: int = 1) -> _InlineMethod:
        return _InlineMethod(self._thread, self._target, self._name, num_returns)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        future = self._thread.submit(getattr(self._target, self._name), *args, **kwargs)
        if self._num_returns == 1:
            return InlineRef(future)
        return tuple(InlineRef(future, i) for i in range(self._num_returns))


class InlineActor:
    """``target`` (a worker object) whose calls run in order on ``thread``, as an actor's do."""

    def __init__(self, thread: ThreadPoolExecutor, target: Any):
        self._thread, self._target = thread, target

    def __getattr__(self, name: str) -> _InlineMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return _InlineMethod(self._thread, self._target, name)


def fetch(ref: Any) -> Any:
    """The value behind ``ref``: an ``InlineRef`` or a Ray object reference."""
    if isinstance(ref, InlineRef):
        return ref.get()
    import ray

    return ray.get(ref)


def fetch_all(refs: Sequence[Any]) -> list[Any]:
    """``fetch`` of each of ``refs`` (Ray references in one ``ray.get``)."""
    if all(isinstance(ref, InlineRef) for ref in refs):
        return [ref.get() for ref in refs]
    import ray

    return ray.get(list(refs))


__all__ = ["InlineActor", "InlineRef", "fetch", "fetch_all"]
