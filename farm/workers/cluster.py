"""Joining Ray: an embedded local cluster by default, or an existing one by address."""

from __future__ import annotations

import logging
import os

import ray


def connect_ray(address: str | None = None, *, min_cpus: int = 1) -> None:
    """Start an embedded local Ray (no ``address``) or join the cluster at ``address``.

    Locally the node advertises at least ``min_cpus`` logical CPUs so that every worker actor
    (one CPU each by default) can be placed even on a 2-core laptop; the OS shares the cores.
    Calling it again when Ray is already up does nothing.
    """
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        return
    ray.init(
        num_cpus=max(os.cpu_count() or 1, min_cpus),
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
        configure_logging=True,
    )
