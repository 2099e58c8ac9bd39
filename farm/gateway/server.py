"""The gateway process: gRPC and HTTP in one asyncio loop over one ``TaskManager``.

    gateway = Gateway(GatewayConfig(grpc_port=0, http_port=0, data_dir="data"))
    await gateway.start()          # gateway.grpc_port / gateway.http_port: the bound ports
    ...
    await gateway.stop()

``serve(config)`` runs it until SIGTERM/SIGINT, then shuts down gracefully: stop admitting (health
NOT_SERVING, Submit UNAVAILABLE), stop the manager (the running task stays queued in the store and
resumes on the next start), then stop both servers after a grace period for calls in flight.

Start-up opens and checks the stores before anything else (before Ray): a task store or artifact
index that is not usable SQLite fails at once with ``StoreError`` naming the file and the cause,
and so does a missing or empty ``tasks.db`` next to stored results, unless ``fresh_store``
(``farm serve --fresh-store``) says to move it aside and begin an empty one. Leftovers of a crash
(half-written uploads and inline assets, encoder temp files of renders nobody holds) are removed.
Every ``expire_interval_s`` the gateway deletes expired videos, the task records that ended
more than ``task_retention_s`` ago, and the assets (uploads, inline media) no task named for
``asset_retention_s``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
from aiohttp import web

from farm.domain.constants import URL_FIELDS
from farm.domain.records import ResultRecord, TaskService
from farm.gateway.auth import ApiKeys
from farm.gateway.config import CONFIG_KEYS, GatewayConfig
from farm.gateway.grpc_service import AssetSink, VideoInferenceServicer, add_services, create_server
from farm.gateway.http_app import ReadinessCheck, RestFace, make_app

if TYPE_CHECKING:
    from farm.scheduler.manager import TaskManager
    from farm.scheduler.store import TaskStore

__all__ = ["CONFIG_KEYS", "Gateway", "GatewayConfig", "GuardedService", "serve"]

log = logging.getLogger(__name__)


class GuardedService:
    """A ``TaskService`` whose ``submit`` refuses webhook/upload URLs the ``UrlGuard`` forbids.

    Checked at submission so the client hears at once (``INVALID_ARGUMENT`` naming the field)
    rather than after the render; delivery checks again (and pins the addresses) when it calls.
    """

    URL_FIELDS = URL_FIELDS

    def __init__(self, service: TaskService, guard):
        self.service = service
        self.guard = guard

    @property
    def inline_calls(self) -> bool:
        """Whether the faces may call get/submit on the event loop (see ``TaskManager``).

        Safe through this wrapper: tasks carrying URLs, whose check may wait on DNS, are still
        sent to a thread by the faces."""
        return getattr(self.service, "inline_calls", False)

    def submit(self, raw_task: dict, api_key: str | None):
        """Validate, vet the URLs, then submit (see ``TaskService.submit``)."""
        from farm.domain.errors import ForbiddenURLError
        from farm.domain.validation import parse_task

        urls = [
            (name, raw_task.get(name))
            for name in self.URL_FIELDS
            if isinstance(raw_task, dict) and isinstance(raw_task.get(name), str)
        ]
        if urls:
            # Validate with the manager's own model list (TaskManager keeps it privately; None
            # means the validator's default), so this pre-check never disagrees with submit.
            known = getattr(self.service, "known_models", None)
            # Every rule first, so an invalid task lists all its violations, not just the URL.
            parse_task(raw_task, **({"known_models": known} if known else {}))
            for name, url in urls:
                try:
                    self.guard.check(url, name)
                except ForbiddenURLError as exc:
                    exc.parameter = name
                    exc.task_uuid = raw_task.get("taskUUID")
                    raise
        return self.service.submit(raw_task, api_key)

    def get(self, task_uuid: str, api_key: str | None):
        """See ``TaskService.get``."""
        return self.service.get(task_uuid, api_key)

    def cancel(self, task_uuid: str, api_key: str | None):
        """See ``TaskService.cancel``."""
        return self.service.cancel(task_uuid, api_key)

    def watch(self, task_uuid: str, api_key: str | None):
        """See ``TaskService.watch``."""
        return self.service.watch(task_uuid, api_key)


class Gateway:
    """gRPC + HTTP servers over a ``TaskService``.

    Without ``service`` the real farm is built from ``config``: ``TaskStore`` (SQLite under
    ``data_dir``), ``LocalArtifactStore``, ``FarmMetrics``, a Ray connection and ``TaskManager``.
    Tests may pass their own ``service``/``artifacts``/``metrics``. ``fresh_store``: begin an empty
    task store when ``tasks.db`` is missing, empty or unusable (the old file is moved aside).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        service: TaskService | None = None,
        artifacts: Any = None,
        metrics: Any = None,
        fresh_store: bool = False,
    ):
        self.config = config
        self.fresh_store = fresh_store
        self.service = service
        self.artifacts = artifacts
        self.metrics = metrics
        self.manager: TaskManager | None = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc_server: grpc.aio.Server | None = None
        self._http_runner: web.AppRunner | None = None
        self._health = None
        self._servicer: VideoInferenceServicer | None = None
        self._rest: RestFace | None = None
        self._stopped = asyncio.Event()
        self._delivery: Any = None
        #: Results whose delivery runs, as last stored.
        self._delivering: dict[tuple[str, int], ResultRecord] = {}
        self._sweeper: asyncio.Task | None = None

    # ---------------------------------------------------------------- building the farm

    def _public_base_url(self) -> str:
        if self.config.public_base_url:
            return self.config.public_base_url.rstrip("/")
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        scheme = "https" if self.config.tls else "http"
        return f"{scheme}://{host}:{self.http_port}"

    def _build_farm(self) -> None:
        """The real TaskManager and its collaborators, from the config."""
        from farm.gateway.metrics import FarmMetrics
        from farm.scheduler.manager import TaskManager
        from farm.workers.cluster import connect_ray

        data = Path(self.config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        # 1. The stores, before Ray: a corrupt or missing one fails here, at once, naming itself.
        store = self._open_stores(data)
        if self.metrics is None:
            self.metrics = FarmMetrics()
        from models.profiles import known_models

        if self.config.profiles:
            from models.profile_config import register_profiles

            for profile in register_profiles(self.config.profiles):
                log.info(
                    "model profile %s: %s from %s",
                    profile.model_id,
                    profile.extra.get("pipeline"),
                    profile.extra.get("weights"),
                )
        gpus = self.config.gpus_per_worker
        finishers = getattr(self.config, "finishers", 1)
        # Embedded Ray: enough logical CPUs for every video worker, the audio worker and the
        # finishers (the OS shares the real cores); a cluster brings its own.
        connect_ray(self.config.ray_address, min_cpus=self.config.workers + 1 + finishers)
        from farm.io.urlguard import UrlGuard
        from farm.render.executor import MediaConfig
        from farm.scheduler.actor import ActorClient
        from farm.scheduler.core import scheduler_config
        from models.profiles import get_profile

        profiles = {model_id: get_profile(model_id) for model_id in known_models()}
        config = scheduler_config(self.config)
        warm = [m for m in profiles if config.pool_policy(m).min_workers > 0]
        client = ActorClient(
            profiles,
            config,
            name=getattr(self.config, "scheduler_name", "farm-scheduler"),
            finishers=finishers,
            warm=warm,
        )
        self.manager = TaskManager(
            store,
            scheduler=client,
            out_dir=data / "out",
            max_queue=self.config.max_queue,
            artifacts=self.artifacts,
            on_result=self._on_result,
            metrics=self.metrics,
            price_per_gpu_second=self.config.price_per_gpu_second,
            gpus_per_worker=gpus,
            # Every registered profile (the embedded default and any loaded ones) is a valid model.
            known_models=tuple(profiles),
            # Media inputs are fetched as each task's owner, under the webhooks' allow-list.
            media=MediaConfig(
                allow_urls=tuple(self.config.allow_urls),
                assets_dir=str(data / "assets"),
                artifacts_dir=str(data / "artifacts"),
            ),
        )
        self.service = GuardedService(self.manager, UrlGuard(self.config.allow_urls))

    def _open_stores(self, data: Path) -> TaskStore:
        """Open and check the artifact index and the task store under ``data``; remove what a
        crash left half-written. Raises ``StoreError`` naming the file and the cause."""
        from farm.io.artifacts import LocalArtifactStore
        from farm.scheduler.store import StoreError, TaskStore

        if self.artifacts is None:
            root = data / "artifacts"
            try:
                self.artifacts = LocalArtifactStore(root, check=True)
            except sqlite3.DatabaseError as error:
                raise StoreError(
                    f"{error}. Move it aside to start without the index of the stored videos (their files stay)",
                    root / LocalArtifactStore.DB_NAME,
                ) from None
        path = data / "tasks.db"
        count = getattr(self.artifacts, "count", None)
        stored = count() if callable(count) else 0
        if (not path.exists() or path.stat().st_size == 0) and stored:
            state = "missing" if not path.exists() else "empty (0 bytes)"
            if not self.fresh_store:
                raise StoreError(
                    f"the task store {path} is {state}, but the artifact store holds {stored} result(s): starting"
                    " would forget every task that rendered them. Restore the file, or start with --fresh-store"
                    " to begin an empty task store",
                    path,
                )
            moved = _move_aside(path)
            log.warning("the task store %s is %s; starting an empty one (--fresh-store)%s", path, state, moved)
        try:
            store = TaskStore(path)
        except StoreError as error:
            if not self.fresh_store:
                raise StoreError(
                    f"{error}. Restore it from a backup, or start with --fresh-store to move it aside and begin"
                    " an empty task store",
                    error.path,
                ) from None
            moved = _move_aside(path)
            log.warning("%s; starting an empty task store (--fresh-store)%s", error, moved)
            store = TaskStore(path)
        self._record_owners(store)
        _sweep_leftovers(data / "assets")
        return store

    def _record_owners(self, store: TaskStore) -> None:
        """Give results stored before the artifact store kept owners the key of their task."""
        unowned = getattr(self.artifacts, "unowned", None)
        videos = unowned() if callable(unowned) else []
        if not videos:
            return
        owners = store.video_owners()
        known = [video for video in videos if video in owners]
        for video in known:
            self.artifacts.set_owner(video, owners[video])
        log.info("recorded the owner of %d earlier result(s) (%d unknown)", len(known), len(videos) - len(known))

    def _on_result(self, record: ResultRecord, task) -> None:
        """The manager's hook for a finished result: give it its URL, start uploads and webhooks.

        Called from the manager's event thread as each result is final. The manager has already
        stored the result with ``upload_status``/``webhook_status`` ``pending`` where the task asks
        for them; a failed result has no upload, only its webhook (error shape). Delivery runs on
        the gateway's event loop (``DeliveryService``: bounded concurrency, retries honouring
        ``Retry-After``); its outcome is stored through ``manager.update_result``.
        """
        if record.status == "success" and record.video_uuid and not record.video_url:
            record = dataclasses.replace(record, video_url=f"{self._public_base_url()}/v1/videos/{record.video_uuid}")
            # Stored before delivery starts, so its outcome is never overwritten.
            if self.manager is not None:
                self.manager.update_result(record)
        self._start_delivery(record, task)

    def _start_delivery(self, record: ResultRecord, task) -> None:
        from farm.domain.constants import output_format
        from farm.gateway.delivery import DeliveryJob
        from farm.io import delivery

        if "pending" not in (record.upload_status, record.webhook_status) or self._delivery is None:
            return
        self._delivering[(record.task_uuid, record.index)] = record
        upload = task.upload_endpoint if record.upload_status == "pending" and record.status == "success" else None
        path = self.manager.result_path(record.task_uuid, record.index) if upload and self.manager else None
        # The receiver hears of the task by the UUID its client submitted (the store may hold it
        # under a scoped id: farm.scheduler.manager, "Identity").
        public = record if record.task_uuid == task.task_uuid else dataclasses.replace(record, task_uuid=task.task_uuid)
        self._delivery.submit(
            DeliveryJob(
                task_uuid=record.task_uuid,
                index=record.index,
                upload_endpoint=upload,
                webhook_url=task.webhook_url if record.webhook_status == "pending" else None,
                file_path=str(path) if path else None,
                content_type=output_format(task.output_format).content_type,
                webhook_payload=delivery.webhook_payload(public),
                idempotency_key=f"{task.task_uuid}:{record.index}",
            )
        )

    def _delivered(self, report, *, final: bool) -> None:
        """Store a delivery outcome (the upload's before the webhook starts; then the whole)."""
        key = (report.job.task_uuid, report.job.index)
        record = self._delivering.get(key)
        if record is None or self.manager is None:
            return
        changes = {}
        if report.upload_status is not None:
            changes["upload_status"] = report.upload_status
        if final and report.webhook_status is not None:
            changes["webhook_status"] = report.webhook_status
        record = dataclasses.replace(record, **changes)
        self._delivering[key] = record
        if final:
            self._delivering.pop(key, None)
        self.manager.update_result(record, delivered=final)

    def _redeliver(self, pending: list) -> int:
        """Start again every upload/webhook a previous run left ``pending`` (cut off by a stop or
        a crash); the webhook's idempotency key is the same as the first time. ``pending`` is read
        before the manager starts, so a result the resumed scheduler delivers is not sent twice."""
        for record, task in pending:
            log.info(
                "redelivering %s result %d (upload %s, webhook %s)",
                record.task_uuid,
                record.index,
                record.upload_status,
                record.webhook_status,
            )
            self._on_result(record, task)
        return len(pending)

    async def start(self) -> None:
        """Build the farm (unless given), start gRPC then HTTP; the bound ports are set after."""
        from farm.gateway.delivery import DeliveryService
        from farm.io.urlguard import UrlGuard

        self._delivery = DeliveryService(
            UrlGuard(self.config.allow_urls),
            on_outcome=functools.partial(self._delivered, final=True),
            on_upload=functools.partial(self._delivered, final=False),
            max_concurrent=self.config.delivery_concurrency,
            metrics=self.metrics,
        )
        await self._delivery.start()
        if self.service is None:
            await asyncio.to_thread(self._build_farm)
        # Deliveries a previous run left pending, read before the runner can add its own.
        pending: list = self.manager.pending_deliveries() if self.manager is not None else []
        if self.manager is not None:
            self.manager.start()
        keys = ApiKeys(self.config.api_keys)
        data = Path(self.config.data_dir)
        if self.service is None:
            raise RuntimeError("the gateway has no task service")
        service: TaskService = self.service

        self._servicer = VideoInferenceServicer(
            service,
            api_keys=keys,
            metrics=self.metrics,
            assets=AssetSink(data / "assets", self.config.max_asset_bytes),
            max_tasks_per_request=self.config.max_tasks_per_request,
        )
        # Auth, metrics and message decoding wrap every RPC once (farm.gateway.interceptors).
        self._grpc_server = create_server(
            self._servicer,
            options=[
                ("grpc.max_receive_message_length", self.config.max_request_bytes),
                ("grpc.max_send_message_length", self.config.max_request_bytes),
            ],
        )
        self._health = await add_services(self._grpc_server, self._servicer)
        address = f"{self.config.host}:{self.config.grpc_port}"
        ssl_context = None
        if bool(self.config.tls_cert) != bool(self.config.tls_key):
            raise ValueError("TLS needs both tls_cert and tls_key")
        if self.config.tls:
            import ssl

            cert_path, key_path = str(self.config.tls_cert), str(self.config.tls_key)
            cert, key = Path(cert_path).read_bytes(), Path(key_path).read_bytes()
            self.grpc_port = self._grpc_server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(cert_path, key_path)
        else:
            self.grpc_port = self._grpc_server.add_insecure_port(address)
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC to {self.config.host}:{self.config.grpc_port}")
        await self._grpc_server.start()

        readiness: ReadinessCheck | None = None
        if self.manager is not None:
            # /readyz: the scheduler actor answers, and each pool with min_workers has them loaded.
            import ray

            from farm.scheduler.actor import SCHEDULER_NAMESPACE
            from farm.scheduler.core import scheduler_config

            scheduler = ray.get_actor(self.config.scheduler_name, namespace=SCHEDULER_NAMESPACE)
            policy = scheduler_config(self.config)
            warm = {f"video:{m}": policy.pool_policy(m).min_workers for m in self.manager.known_models or ()}

            def pools_ready() -> tuple[bool, dict]:
                stats = cast(dict, ray.get(scheduler.stats.remote(), timeout=2.0))  # Ray's stubs say list
                pools = stats["pools"]
                up = {name: pools.get(name, {}).get("idle", 0) + pools.get(name, {}).get("busy", 0) for name in warm}
                loading = {name: f"{up[name]}/{n} workers ready" for name, n in warm.items() if up[name] < n}
                return not loading, {"loading": loading} if loading else {}

            readiness = pools_ready
        self._rest = RestFace(
            service,
            api_keys=keys,
            artifacts=self.artifacts,
            metrics=self.metrics,
            max_tasks_per_request=self.config.max_tasks_per_request,
            readiness=readiness,
        )
        self._http_runner = web.AppRunner(
            make_app(self._rest, max_request_bytes=self.config.max_request_bytes), access_log=None
        )
        await self._http_runner.setup()
        site = web.TCPSite(self._http_runner, self.config.host, self.config.http_port, ssl_context=ssl_context)
        await site.start()
        self.http_port = self._http_runner.addresses[0][1]
        # Only now is the HTTP port known, so only now can videoURLs be completed.
        public = self._public_base_url()
        self._servicer.public_base_url = public
        self._rest.public_base_url = public
        # Deliveries a previous run left pending; only now can their videoURLs be completed.
        self._redeliver(pending)
        if self.manager is not None or callable(getattr(self.artifacts, "expire", None)):
            self._sweeper = asyncio.create_task(self._housekeeping(), name="housekeeping")
        log.info(
            "gateway up: gRPC %s:%d, HTTP %s:%d", self.config.host, self.grpc_port, self.config.host, self.http_port
        )

    async def _housekeeping(self) -> None:
        """Now, then every ``expire_interval_s``: delete expired artifacts (``get`` already answers
        410 the moment a ttl passes; this frees the disk), the records of tasks that ended more
        than ``task_retention_s`` ago (GetResponse then answers them as unknown), and the assets
        no task named for ``asset_retention_s`` (none an unfinished task names)."""
        while True:
            if callable(getattr(self.artifacts, "expire", None)):
                try:
                    removed = await asyncio.to_thread(self.artifacts.expire)
                    if removed:
                        log.info("deleted %d expired artifact(s)", removed)
                except Exception:
                    log.exception("artifact expiry failed")
            if self.manager is not None:
                try:
                    pruned = await asyncio.to_thread(self.manager.prune, self.config.task_retention_s)
                    if pruned:
                        log.info("pruned %d task record(s) past the retention period", pruned)
                except Exception:
                    log.exception("pruning task records failed")
                try:
                    expired = await asyncio.to_thread(self.manager.expire_assets, self.config.asset_retention_s)
                    if expired:
                        log.info("deleted %d asset(s) unused for the retention period", expired)
                except Exception:
                    log.exception("asset expiry failed")
            await asyncio.sleep(self.config.expire_interval_s)

    async def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown: stop admitting, stop the manager, then both servers."""
        for face in (self._servicer, self._rest):
            if face is not None:
                face.admitting = False
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.manager is not None:
            # On a cluster the scheduler goes on rendering (a restarted gateway picks its tasks up);
            # with the embedded Ray it stops with us, and the next start hands unfinished tasks over
            # again from the store.
            await asyncio.to_thread(
                functools.partial(self.manager.stop, shutdown_scheduler=self.config.ray_address is None)
            )
        if self._grpc_server is not None:
            await self._grpc_server.stop(grace)
        if self._http_runner is not None:
            await self._http_runner.cleanup()
        if self._delivery is not None:
            # Deliveries cut off here stay pending in the store and are sent again on the next start.
            await self._delivery.stop(grace)
        close = getattr(self.artifacts, "close", None)
        if callable(close) and self.manager is not None:
            close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Return once ``stop`` has finished."""
        await self._stopped.wait()


def _move_aside(path: Path) -> str:
    """Rename ``path`` and its WAL/shared-memory files to ``<name>.corrupt-<UTC time>`` (a WAL left
    next to a new database would be replayed into it); says what moved, for the log."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if part.exists():
            target = part.with_name(f"{part.name}.corrupt-{stamp}")
            part.rename(target)
            moved.append(target.name)
    return f"; moved aside: {', '.join(moved)}" if moved else ""


def _sweep_leftovers(assets: Path) -> None:
    """Delete half-written assets a crash left (``UploadAsset``'s ``<uuid>.part``, inline media's
    ``.<name>.partial-<hex>``): only this process writes there, and it has just started."""
    if not assets.is_dir():
        return
    leftovers = [*assets.glob("*.part"), *assets.glob(".*.partial-*")]
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    if leftovers:
        log.info("removed %d half-written asset file(s) from %s", len(leftovers), assets)


#: glibc's ``mallopt`` parameter for the mmap threshold, and the value ``serve`` fixes it at.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1 << 20


def _return_large_buffers_to_the_os() -> bool:
    """Fix glibc's mmap threshold at 1 MiB for this process (unless ``MALLOC_MMAP_THRESHOLD_``
    says otherwise); whether it was set.

    glibc raises the threshold to the size of the largest block freed (up to 32 MiB): after one
    request with 20 MB of inline media, every later body, its decoded JSON and its media come from
    malloc arenas, which keep the memory once it is freed. Measured with ``benchmarks/chaos.py
    --phases memory`` (50 tasks of 20 MB inline media each): the gateway's RSS grew 129 MiB with
    the dynamic threshold, 2 MiB with it fixed. Small allocations are unaffected.
    """
    import ctypes
    import os

    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):  # not glibc: its allocator has its own rules
        return False


async def serve(config: GatewayConfig, *, ready: asyncio.Event | None = None, fresh_store: bool = False) -> None:
    """Run the gateway until SIGTERM or SIGINT, then shut down gracefully. ``fresh_store``: see
    ``Gateway``."""
    _return_large_buffers_to_the_os()
    gateway = Gateway(config, fresh_store=fresh_store)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Before the ports are announced: a SIGTERM right after start must stop gracefully.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await gateway.start()
    # Again: joining Ray installs its own (abseil) SIGTERM handler, which would abort the process.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"farm gateway: gRPC on {config.host}:{gateway.grpc_port}, HTTP on {config.host}:{gateway.http_port}, "
        f"data in {config.data_dir}",
        flush=True,
    )
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        print("farm gateway: shutting down", flush=True)
        await gateway.stop()
        if config.ray_address is None:
            # The embedded Ray is ours: without an explicit shutdown its dashboard and
            # runtime-env agents outlive the gateway process.
            import ray

            ray.shutdown()
