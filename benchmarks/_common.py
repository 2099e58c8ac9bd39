"""Helpers shared by the benchmark scripts (not part of the farm)."""

from __future__ import annotations

import platform
import subprocess
import uuid
from datetime import date


def machine() -> str:
    """One line naming this machine: CPU model, cores, date."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    import os

    return f"{model}, {os.cpu_count()} cores, {date.today().isoformat()}"


def proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` memory field of this process in KiB (``VmRSS``, ``VmHWM``...).

    ``VmHWM``, unlike ``ru_maxrss``, starts fresh at ``exec``: on Linux ``ru_maxrss`` carries the
    high-water mark of the process that forked this one, so a script started by a large test
    process would report that process's peak instead of its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` where /proc has it, else ``ru_maxrss``."""
    try:
        return proc_status_kib("VmHWM") / 1024
    except (OSError, RuntimeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task(**overrides) -> dict:
    """A seed-shaped task for benchmarks."""
    spec = {
        "taskType": "videoInference",
        "taskUUID": str(uuid.uuid4()),
        "model": "skywork:skyreels@v4",
        "positivePrompt": "A lighthouse on a cliff at dusk, waves crashing, gulls crying",
        "duration": 5,
        "resolution": "720p",
        "outputFormat": "MP4",
        "settings": {"audio": True},
    }
    spec.update(overrides)
    return spec


def union_seconds(intervals) -> float:
    """Length of the union of ``(start, end)`` intervals."""
    total, current_start, current_end = 0.0, None, None
    for start, end in sorted(intervals):
        if current_end is None or start > current_end:
            if current_end is not None:
                total += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    if current_end is not None:
        total += current_end - current_start
    return total
