"""The gateway process: gRPC and HTTP in one asyncio loop over one ``TaskManager``.

    gateway = Gateway(GatewayConfig(grpc_port=0, http_port=0, data_dir="data"))
    await gateway.start()          # gateway.grpc_port / gateway.http_port: the bound ports
    ...
    await gateway.stop()

``serve(config)`` runs it until SIGTERM/SIGINT, then shuts down gracefully: stop admitting (health
NOT_SERVING, Submit UNAVAILABLE), stop the manager (the running task stays queued in the store and
resumes on the next start), then stop both servers after a grace period for calls in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from aiohttp import web

from farm.domain.records import ResultRecord, TaskService
from farm.gateway.grpc_service import AssetSink, VideoInferenceServicer, add_services
from farm.gateway.http_app import RestFace, make_app
from farm.gateway.wire import ApiKeys

log = logging.getLogger(__name__)

#: Config file keys (YAML) and their GatewayConfig fields.
CONFIG_KEYS = (
    "api_keys",
    "allow_urls",
    "max_queue",
    "price_per_gpu_second",
    "public_base_url",
    "grpc_port",
    "http_port",
    "host",
    "data_dir",
    "ray_address",
    "workers",
    "gpus_per_worker",
    "max_request_bytes",
    "max_asset_bytes",
    "tls_cert",
    "tls_key",
    "expire_interval_s",
    "profiles",
)


@dataclass
class GatewayConfig:
    """Everything the gateway is configured with (CLI flags, optionally a YAML file)."""

    grpc_port: int = 50051
    http_port: int = 8080
    host: str = "0.0.0.0"
    data_dir: str = "farm-data"
    #: Ray cluster to join; None starts an embedded local Ray.
    ray_address: str | None = None
    #: Video worker actors per model pool.
    workers: int = 2
    gpus_per_worker: float = 0.0
    #: Bearer keys; empty: no authentication.
    api_keys: list[str] = field(default_factory=list)
    #: Hosts/IPs/CIDRs the farm may call although they are loopback/private (webhooks, uploads).
    allow_urls: list[str] = field(default_factory=list)
    max_queue: int = 100
    price_per_gpu_second: float = 0.0
    #: Base of videoURL (e.g. https://farm.example.com); default http://<host>:<http port>.
    public_base_url: str | None = None
    max_request_bytes: int = 64 * 1024 * 1024
    max_asset_bytes: int = 50 * 1024 * 1024
    #: How often expired artifacts (past their task's ttl) are deleted from disk.
    expire_interval_s: float = 30.0
    #: PEM certificate chain and private key: both given, gRPC and HTTP serve TLS only.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: YAML model profiles (a file or a directory, docs/profiles.md) registered before serving,
    #: over the embedded default; relative paths in a config file are relative to that file.
    profiles: str | None = None

    @property
    def tls(self) -> bool:
        """Whether both ports serve TLS."""
        return bool(self.tls_cert and self.tls_key)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> GatewayConfig:
        """Read a YAML config; ``overrides`` (non-None values, e.g. CLI flags given) win."""
        import yaml

        raw = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        unknown = sorted(set(raw) - set(CONFIG_KEYS))
        if unknown:
            raise ValueError(f"{path}: unknown keys {unknown}; known: {list(CONFIG_KEYS)}")
        if isinstance(raw.get("profiles"), str) and not Path(raw["profiles"]).is_absolute():
            # So a config and its profiles can move together (e.g. both in one ConfigMap).
            raw["profiles"] = str(Path(path).parent / raw["profiles"])
        values = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        return cls(**values)


class GuardedService:
    """A ``TaskService`` whose ``submit`` refuses webhook/upload URLs the ``UrlGuard`` forbids.

    Checked at submission so the client hears at once (``INVALID_ARGUMENT`` naming the field)
    rather than after the render; delivery checks again (and pins the addresses) when it calls.
    """

    URL_FIELDS = ("webhookURL", "uploadEndpoint")

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
    Tests may pass their own ``service``/``artifacts``/``metrics``.
    """

    def __init__(
        self, config: GatewayConfig, *, service: TaskService | None = None, artifacts: Any = None, metrics: Any = None
    ):
        self.config = config
        self.service = service
        self.artifacts = artifacts
        self.metrics = metrics
        self.manager = None
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self._grpc_server: grpc.aio.Server | None = None
        self._http_runner: web.AppRunner | None = None
        self._health = None
        self._servicer: VideoInferenceServicer | None = None
        self._rest: RestFace | None = None
        self._stopped = asyncio.Event()
        self._delivery_threads: list[threading.Thread] = []
        #: ``_on_result`` runs in the render's finisher threads, several at once.
        self._delivery_lock = threading.Lock()
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
        from farm.io.artifacts import LocalArtifactStore
        from farm.scheduler.manager import TaskManager
        from farm.scheduler.store import TaskStore
        from farm.workers.cluster import connect_ray

        data = Path(self.config.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        if self.metrics is None:
            self.metrics = FarmMetrics()
        if self.artifacts is None:
            self.artifacts = LocalArtifactStore(data / "artifacts")
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
            TaskStore(data / "tasks.db"),
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

    def _on_result(self, record: ResultRecord, task) -> None:
        """The manager's hook for a finished result: give it its URL, start uploads and webhooks.

        Called from the render's finisher threads as each result is final. The manager has
        already stored the result with ``upload_status``/``webhook_status`` ``pending`` where the
        task asks for them; a failed result has no upload, only its webhook (error shape).
        Delivery (retries with backoff) runs on its own thread so rendering is not held up; its
        outcome is stored through ``manager.update_result``.
        """
        if record.status == "success" and record.video_uuid and not record.video_url:
            record = dataclasses.replace(record, video_url=f"{self._public_base_url()}/v1/videos/{record.video_uuid}")
            # Stored before the delivery thread starts, so its outcome is never overwritten.
            if self.manager is not None:
                self.manager.update_result(record)
        self._start_delivery(record, task)

    def _start_delivery(self, record: ResultRecord, task) -> None:
        if "pending" not in (record.upload_status, record.webhook_status):
            return
        thread = threading.Thread(target=self._deliver, args=(record, task), name="delivery", daemon=True)
        with self._delivery_lock:
            self._delivery_threads = [t for t in self._delivery_threads if t.is_alive()] + [thread]
        thread.start()

    def _redeliver(self, pending: list) -> int:
        """Start again every upload/webhook a previous run left ``pending`` (cut off by a stop or
        a crash); the webhook's idempotency key is the same as the first time. ``pending`` is read
        before the manager starts, so a result the resumed runner delivers is not sent twice."""
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

    def _deliver(self, record: ResultRecord, task) -> None:
        """Upload and/or webhook one result (each retried inside ``farm.io.delivery``), then store the outcome.

        Only the parts still ``pending`` run, and the upload's outcome is stored before the
        webhook starts, so a restart in between does not upload twice.
        """
        from farm.io import delivery
        from farm.io.artifacts import content_type_for
        from farm.io.urlguard import UrlGuard

        guard = UrlGuard(self.config.allow_urls)
        final = record
        if task.upload_endpoint and record.upload_status == "pending" and record.status == "success":
            ok = False
            try:
                path = self.manager.result_path(record.task_uuid, record.index)
                outcome = asyncio.run(
                    delivery.upload_file(
                        task.upload_endpoint, Path(path), content_type=content_type_for(task.output_format), guard=guard
                    )
                )
                ok = outcome.ok
            except Exception:  # refused URL, missing file: the result says "failed"
                log.exception("upload of %s result %d failed", record.task_uuid, record.index)
            final = dataclasses.replace(final, upload_status="delivered" if ok else "failed")
            if not ok and self.metrics is not None:
                self.metrics.delivery_failed("upload")
            if self.manager is not None and task.webhook_url:
                self.manager.update_result(final)
        if task.webhook_url and record.webhook_status == "pending":
            ok = False
            try:
                # The key is stable across retries and gateway restarts: receivers can drop repeats.
                outcome = asyncio.run(
                    delivery.post_webhook(
                        task.webhook_url,
                        delivery.webhook_payload(final),
                        idempotency_key=f"{record.task_uuid}:{record.index}",
                        guard=guard,
                    )
                )
                ok = outcome.ok
            except Exception:  # keep sweeping; a bad file must not stop the loop
                log.exception("webhook of %s result %d failed", record.task_uuid, record.index)
            final = dataclasses.replace(final, webhook_status="delivered" if ok else "failed")
            if not ok and self.metrics is not None:
                self.metrics.delivery_failed("webhook")
        if self.manager is not None:
            self.manager.update_result(final, delivered=True)

    # ---------------------------------------------------------------- running

    async def start(self) -> None:
        """Build the farm (unless given), start gRPC then HTTP; the bound ports are set after."""
        if self.service is None:
            await asyncio.to_thread(self._build_farm)
        # Deliveries a previous run left pending, read before the runner can add its own.
        pending = self.manager.pending_deliveries() if self.manager is not None else []
        if self.manager is not None:
            self.manager.start()
        keys = ApiKeys(self.config.api_keys)
        data = Path(self.config.data_dir)

        self._grpc_server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", self.config.max_request_bytes),
                ("grpc.max_send_message_length", self.config.max_request_bytes),
            ]
        )
        self._servicer = VideoInferenceServicer(
            self.service,
            api_keys=keys,
            metrics=self.metrics,
            assets=AssetSink(data / "assets", self.config.max_asset_bytes),
        )
        self._health = await add_services(self._grpc_server, self._servicer)
        address = f"{self.config.host}:{self.config.grpc_port}"
        ssl_context = None
        if bool(self.config.tls_cert) != bool(self.config.tls_key):
            raise ValueError("TLS needs both tls_cert and tls_key")
        if self.config.tls:
            import ssl

            cert, key = Path(self.config.tls_cert).read_bytes(), Path(self.config.tls_key).read_bytes()
            self.grpc_port = self._grpc_server.add_secure_port(address, grpc.ssl_server_credentials([(key, cert)]))
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        else:
            self.grpc_port = self._grpc_server.add_insecure_port(address)
        if not self.grpc_port:
            raise OSError(f"cannot bind gRPC to {self.config.host}:{self.config.grpc_port}")
        await self._grpc_server.start()

        self._rest = RestFace(self.service, api_keys=keys, artifacts=self.artifacts, metrics=self.metrics)
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
        if self.artifacts is not None and callable(getattr(self.artifacts, "expire", None)):
            self._sweeper = asyncio.create_task(self._sweep_artifacts(), name="artifact-sweeper")
        log.info(
            "gateway up: gRPC %s:%d, HTTP %s:%d", self.config.host, self.grpc_port, self.config.host, self.http_port
        )

    async def _sweep_artifacts(self) -> None:
        """Delete expired artifacts now and then (``get`` already answers 410 the moment a ttl
        passes; this frees the disk)."""
        while True:
            await asyncio.sleep(self.config.expire_interval_s)
            try:
                removed = await asyncio.to_thread(self.artifacts.expire)
                if removed:
                    log.info("deleted %d expired artifact(s)", removed)
            except Exception:
                log.exception("artifact expiry failed")

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
        with self._delivery_lock:
            threads = list(self._delivery_threads)
        for thread in threads:
            await asyncio.to_thread(thread.join, grace)
        close = getattr(self.artifacts, "close", None)
        if callable(close) and self.manager is not None:
            close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Return once ``stop`` has finished."""
        await self._stopped.wait()


async def serve(config: GatewayConfig, *, ready: asyncio.Event | None = None) -> None:
    """Run the gateway until SIGTERM or SIGINT, then shut down gracefully."""
    gateway = Gateway(config)
    await gateway.start()
    print(
        f"farm gateway: gRPC on {config.host}:{gateway.grpc_port}, HTTP on {config.host}:{gateway.http_port}, "
        f"data in {config.data_dir}",
        flush=True,
    )
    if ready is not None:
        ready.set()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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
