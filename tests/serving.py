"""``farm serve`` as the tests and the benchmarks start it."""

from __future__ import annotations

import sys
from pathlib import Path


def serve_command(data_dir: str | Path, *options: str) -> list[str]:
    """``farm serve`` on loopback, on ports the OS picks (it prints them), with its state in
    ``data_dir``; ``options`` follow (``--config``, ``--workers``, ``--ray-address`` ...)."""
    return [
        sys.executable,
        "-m",
        "farm.cli",
        "serve",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--host",
        "127.0.0.1",
        "--data-dir",
        str(data_dir),
        *options,
    ]
