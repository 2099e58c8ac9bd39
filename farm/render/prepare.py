"""Preparing a task's media inputs: fetch, decode and place them on the render grid, off the GPUs.

A task with media inputs (URLs, assets, earlier results, data URIs) is prepared before it takes
any render capacity: a slow or large input then delays only its own task. In the cluster this runs
as a Ray task on a CPU (``prepare_remote``), which returns two objects: small ``PreparedInputs``
for the scheduler and the ``ClipConditioning`` that stays in the object store for the workers.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections.abc import Callable
from typing import Any

from farm.domain.task import VideoInferenceTask
from farm.render.executor import MediaConfig, Prepared, PreparedInputs
from farm.workers.messages import ClipConditioning


def resolver_for(media: MediaConfig) -> Any:
    """A ``MediaResolver`` that fetches as the task's owner would: its assets, its results, and
    URLs through the gateway's allow-list."""
    from pathlib import Path

    from farm.io.media import MediaResolver
    from farm.io.urlguard import UrlGuard

    artifacts = None
    if media.artifacts_dir is not None and Path(media.artifacts_dir).is_dir():
        from farm.io.artifacts import LocalArtifactStore

        artifacts = LocalArtifactStore(Path(media.artifacts_dir))
    return MediaResolver(
        guard=UrlGuard(tuple(media.allow_urls)), assets_dir=media.assets_dir, artifacts=artifacts, api_key=media.api_key
    )


def prepare_inputs(task: VideoInferenceTask, profile: Any, *, resolver: Any) -> tuple[PreparedInputs, ClipConditioning]:
    """Decode ``task``'s inputs with ``resolver``; ``TaskValidationError`` names each bad field."""
    from farm.io.media import resolve_inputs
    from farm.render.conditioning import build_conditioning, extend_lead_frames, output_size

    inputs = resolve_inputs(task, resolver)
    width, height = output_size(task.width, task.height, task.resolution, inputs)
    native_w, native_h = profile.native_size(width, height)
    conditioning = build_conditioning(
        inputs,
        num_frames=task.num_frames,
        native_width=native_w,
        native_height=native_h,
        extend_frames=extend_lead_frames(profile),
    )
    carried = conditioning.carried_audio
    prepared = PreparedInputs(
        width=width,
        height=height,
        lead_frames=conditioning.lead_frames,
        conditioned=not conditioning.empty,
        carried_audio=carried is not None,
        carried_channels=int(carried[0].shape[0]) if carried is not None else 2,
    )
    # The voice reference travels with the conditioning too (referenceImages make it non-empty).
    return prepared, conditioning


def with_conditioning(prepared: PreparedInputs, conditioning: Any) -> PreparedInputs:
    """``prepared`` pointing at its conditioning (an object reference, or the object itself in
    process), when the render needs it."""
    if not prepared.conditioned and not prepared.carried_audio:
        return prepared
    return dataclasses.replace(prepared, conditioning=conditioning)


def prepare_in_thread(
    task: VideoInferenceTask,
    profile: Any,
    resolver: Any,
    report: Callable[[Prepared], None],
    place: Callable[[ClipConditioning], Any] = lambda conditioning: conditioning,
) -> None:
    """Prepare ``task``'s inputs on a thread of this process with ``resolver``; ``report`` gets the
    ``Prepared`` outcome, its conditioning as ``place`` puts it (``ray.put`` for actors)."""

    def run() -> None:
        try:
            prepared, conditioning = prepare_inputs(task, profile, resolver=resolver)
            inputs = with_conditioning(prepared, place(conditioning))
        except BaseException as error:  # noqa: BLE001 - reported as the task's failure
            report(Prepared(task_uuid=task.task_uuid, error=error))
            return
        report(Prepared(task_uuid=task.task_uuid, inputs=inputs))

    threading.Thread(target=run, name=f"prepare-{task.task_uuid[:8]}", daemon=True).start()


def _prepare_task(
    task: VideoInferenceTask, profile: Any, media: MediaConfig
) -> tuple[PreparedInputs, ClipConditioning]:
    return prepare_inputs(task, profile, resolver=resolver_for(media))


@functools.cache
def prepare_remote() -> Any:
    """``_prepare_task`` as a Ray task with two returns (one CPU; retried never: the error names
    the bad input)."""
    import ray

    return ray.remote(num_cpus=1, num_returns=2, max_retries=0)(_prepare_task)


__all__ = ["prepare_in_thread", "prepare_inputs", "prepare_remote", "resolver_for", "with_conditioning"]
