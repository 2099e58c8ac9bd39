"""Joining Ray: an embedded local cluster by default, or an existing one by address.

An embedded cluster belongs to the process that started it, and goes when that process goes:

* ``stop_ray()`` ends it at once. ``ray.shutdown()`` stops the node's processes one by one, each
  with up to a second's grace (the autoscaler monitor always used it), and ``farm render``'s exit
  added half a second of atexit sleep: about 3 s after the last file was final. Here this process
  disconnects (0.3 s), then every process of the node gets SIGKILL together and is gone within
  ~20 ms: nothing in them is still wanted, results were written by the caller.
* When the process dies without that (SIGKILL, a crash), Ray's own fate sharing
  (``PR_SET_PDEATHSIG``, bound to the *thread* that called ``ray.init``) ends GCS, raylet and the
  other direct children, but not the raylet's children: its dashboard and runtime-env agents
  outlived a SIGKILLed parent by more than a minute (they report the raylet's death to the dead
  GCS first). A watchdog process (``python -m farm.workers.cluster``: no Ray, no torch, 14 MB)
  holds the read end of a pipe whose write end only this process holds; end of file means the
  process is gone, however it went, and the watchdog kills every process it has seen in the node
  (and any worker of that raylet). It also leaves once GCS and raylet are gone.

The embedded node starts only what a single-machine farm uses: no autoscaler monitor (nothing to
scale) and no log monitor (worker logs are not forwarded, ``log_to_driver=False``); measured, the
two cost 160 MB and about 0.8 CPU-seconds at every start. Its dashboard agent listens on a free
port rather than Ray's fixed 52365: with another Ray on the machine, binding that one failed after
3.2 s of retries, which the raylet waited out before starting any worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

#: The processes an embedded node cannot run without: once they are gone, the node is.
_NODE_CORE = ("gcs_server", "raylet")
#: How often the watchdog checks that the node is still up, and how often it looks for new
#: processes in it (agents start with the raylet, workers later; workers it missed are found at
#: the end by their ``RAY_RAYLET_PID``).
WATCHDOG_POLL_S = 0.25
WATCHDOG_SCAN_S = 2.0
#: How long ``stop_ray`` and the watchdog wait for killed processes to be gone.
KILL_WAIT_S = 5.0

log = logging.getLogger(__name__)

__all__ = ["connect_ray", "node_processes", "stop_ray"]


def connect_ray(address: str | None = None, *, min_cpus: int = 1) -> None:
    """Start an embedded local Ray (no ``address``) or join the cluster at ``address``.

    Locally the node advertises at least ``min_cpus`` logical CPUs so that every worker actor
    (one CPU each by default) can be placed even on a 2-core laptop; the OS shares the cores; a
    watchdog makes the node die with this process (see the module docstring). Call it from the
    main thread, or from one that lives as long as Ray should: GCS and raylet die with the thread
    that started them. Calling it again when Ray is already up does nothing.
    """
    import ray

    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        return
    with _lean_node():
        ray.init(
            num_cpus=max(os.cpu_count() or 1, min_cpus),
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=True,
        )
    _start_watchdog()


def stop_ray() -> None:
    """Leave Ray now: an embedded node is stopped in well under a second, a cluster is left running.

    Every process of the embedded node is gone when this returns (workers included), so call it
    only once nothing running in the node is wanted any more. Does nothing when Ray is not up.
    """
    import ray

    if not ray.is_initialized():
        return
    node = _embedded_node()
    processes = node_processes()
    if node is not None:
        # This process disconnects first (about 0.3 s), or it would report every worker's death
        # on stderr; ray.shutdown then leaves the node alone, and it all goes at once below.
        node.kill_all_processes = _leave_running
    ray.shutdown()
    _kill(processes)


def node_processes() -> list[Any]:
    """The processes of the embedded node this process started, with their descendants
    (``psutil.Process`` objects); empty when joined to a cluster or Ray is not up."""
    import psutil

    node = _embedded_node()
    if node is None:
        return []
    found: dict[int, Any] = {}
    for infos in node.all_processes.values():
        for info in infos:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(info.process.pid)
                found.setdefault(root.pid, root)
                for child in root.children(recursive=True):
                    found.setdefault(child.pid, child)
    return list(found.values())


# ---------------------------------------------------------------- the embedded node


def _embedded_node() -> Any:
    """Ray's own record of the node ``ray.init`` started here (None when it joined a cluster)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None or not getattr(node, "ray_init_cluster", False) or not hasattr(node, "all_processes"):
        return None
    return node


@contextlib.contextmanager
def _lean_node() -> Iterator[None]:
    """While ``ray.init`` starts a node: no autoscaler monitor, no log monitor, and the dashboard
    agent on a free port.

    ``ray.init`` does not take these (``ray start`` does: ``--no-monitor``,
    ``--dashboard-agent-listen-port``); they are fields of the ``RayParams`` it builds, whose
    defaults are set here for the duration of the call. A Ray without them starts its usual node.
    """
    try:
        from ray._private.parameter import RayParams
    except ImportError:  # pragma: no cover - another Ray layout: the default node
        yield
        return
    original = RayParams.__init__

    def lean_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("no_monitor", True)
        kwargs.setdefault("include_log_monitor", False)
        # Any free port: on 52365, Ray's fixed default, a second Ray on the machine (another
        # user's, a test's) makes the agent retry for 3.2 s while the raylet waits for it.
        kwargs.setdefault("dashboard_agent_listen_port", 0)
        original(self, *args, **kwargs)

    RayParams.__init__ = lean_init  # type: ignore[method-assign]  # patched only while ray.init runs
    try:
        yield
    finally:
        RayParams.__init__ = original  # type: ignore[method-assign]  # restored


def _start_watchdog() -> None:
    """Start the watchdog of the embedded node (see the module docstring)."""
    # The node's processes now, agents included: if this process dies before the watchdog has
    # looked, the raylet is gone at once (fate sharing) and its agents can no longer be told apart.
    pids = [str(process.pid) for process in node_processes()]
    if not pids:
        return
    # Neither end is inherited by anything else (os.pipe is close-on-exec; Popen closes other fds):
    # the write end stays open exactly as long as this process lives, and is never closed here.
    read_end, write_end = os.pipe()
    try:
        subprocess.Popen(
            [sys.executable, "-m", "farm.workers.cluster", str(read_end), *pids],
            pass_fds=(read_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            # Its own session: a Ctrl-C to this process's group must not stop it before Ray goes.
            start_new_session=True,
        )
    except OSError as exc:  # the node still works, it only lacks its guard
        log.warning("cannot start the Ray watchdog: %s", exc)
        os.close(write_end)
    finally:
        os.close(read_end)


# ---------------------------------------------------------------- killing


def _leave_running(**_: Any) -> None:
    """Stands in for ``Node.kill_all_processes`` while ``ray.shutdown`` disconnects (see ``stop_ray``)."""


def _process_name(process: Any) -> str:
    import psutil

    try:
        return process.name()
    except psutil.Error:
        return ""


def _alive(process: Any) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill(processes: list[Any], timeout: float = KILL_WAIT_S) -> None:
    """SIGKILL ``processes`` together and wait until each is gone (children of this process reaped)."""
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):  # already gone, or its pid reused (psutil checks)
            process.kill()
    deadline = time.monotonic() + timeout
    pending = list(processes)
    while pending and time.monotonic() < deadline:
        for process in list(pending):
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(process.pid, os.WNOHANG)  # reap our own children, if any
            if not _alive(process):
                pending.remove(process)
        if pending:
            # psutil.wait_procs backs off to 40 ms polls; killed processes go within ~20 ms.
            time.sleep(0.005)


# ---------------------------------------------------------------- the watchdog process


def _started_by(process: Any, raylet_pids: set[int]) -> bool:
    """Whether ``process`` is a worker of one of ``raylet_pids`` (Ray sets ``RAY_RAYLET_PID`` in
    its workers' environment; its agents have none)."""
    import psutil

    try:
        return process.environ().get("RAY_RAYLET_PID") in {str(pid) for pid in raylet_pids}
    except psutil.Error:
        return False


def _ray_workers_of(raylet_pids: set[int]) -> list[Any]:
    """Live workers of one of ``raylet_pids``, wherever they were reparented to."""
    import psutil

    return [p for p in psutil.process_iter() if _started_by(p, raylet_pids)]


def _watch(read_end: int, pids: list[int]) -> None:
    """Wait for the parent to go (end of file on ``read_end``) or the node to stop, then kill
    whatever is left of the node: ``pids`` (its processes when it started) and their descendants."""
    import psutil

    seen: dict[int, Any] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            seen[pid] = psutil.Process(pid)
    roots = list(seen.values())
    core = [p for p in roots if _process_name(p) in _NODE_CORE]
    raylets = {p.pid for p in core if _process_name(p) == "raylet"}

    def look() -> None:  # what the node started since
        for root in roots:
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    seen.setdefault(child.pid, child)

    last_look = time.monotonic()
    while True:
        readable, _, _ = select.select([read_end], [], [], WATCHDOG_POLL_S)
        if readable and not os.read(read_end, 1):
            break  # the parent is gone
        if core and not any(_alive(p) for p in core):
            break  # the node was stopped
        if time.monotonic() - last_look >= WATCHDOG_SCAN_S:
            last_look = time.monotonic()
            look()
    look()
    for worker in _ray_workers_of(raylets):
        seen.setdefault(worker.pid, worker)
    _kill([p for p in seen.values() if _alive(p) and p.pid != os.getpid()])


if __name__ == "__main__":
    # python -m farm.workers.cluster READ_FD PID... (started by connect_ray; see the module docstring)
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watch(int(sys.argv[1]), [int(pid) for pid in sys.argv[2:]])
