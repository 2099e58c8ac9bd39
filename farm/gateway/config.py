"""The gateway's configuration: one pydantic model, checked whole at start-up.

``farm serve --config farm.yaml`` reads a YAML mapping of the keys below; flags given on the command
line win (``GatewayConfig.from_file(path, **overrides)``). Every key is documented on its field,
bounded, and refused at start-up with its path named when it is wrong, e.g.

    farm.yaml: api_keys: must be a list of non-empty strings, got 'alice'
    farm.yaml: workers: must be >= 1, got -3
    farm.yaml: pools.skywork:skyreels@v4.min_workers: 4 is more than max_workers (2)
    farm.yaml: unknown key 'worker'; known keys: allow_urls, api_keys, ...

    TenantConfig   weight and concurrency cap of one API key's tasks (``tenants``, ``default_tenant``)
    PoolConfig     worker bounds and idle timeout of one model's pool (``pools``, ``default_pool``)
    GatewayConfig  everything, composed of the above

A bad config raises ``ConfigError`` (a ``ValueError``) whose message lists every problem, one per
line; ``ConfigError.problems`` holds them as ``(key path, message)`` pairs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from farm.domain.constants import MAX_MEDIA_BYTES, MAX_REQUEST_BYTES
from farm.domain.errors import clip
from farm.gateway.wire import MAX_TASKS_PER_REQUEST

__all__ = ["GatewayConfig", "TenantConfig", "PoolConfig", "ConfigError", "CONFIG_KEYS"]

#: One week: how long finished task rows are kept by default.
_WEEK_S = 7 * 24 * 3600.0
#: gRPC message size options are C ints.
_INT32_MAX = 2**31 - 1
#: Problems reported by the model validators themselves carry their own key paths.
_OWN_PATHS = "farm_config"


class ConfigError(ValueError):
    """A gateway config that cannot be used; ``problems`` lists ``(key path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None):
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(f"{prefix}{path}: {text}" if path else f"{prefix}{text}" for path, text in problems))


def _shown(value: Any) -> str:
    return clip(repr(value), 80)


def _problem(message: str, *, at: list[tuple[str, str]] | None = None) -> PydanticCustomError:
    """A refusal shown as is (no pydantic prefix); ``at``: problems with their own absolute key paths."""
    return PydanticCustomError(_OWN_PATHS, "{text}", {"text": message, "at": at or []})


def _path(loc: tuple[int | str, ...]) -> str:
    """``("pools", "skywork:skyreels@v4", "min_workers")`` -> ``pools.skywork:skyreels@v4.min_workers``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_MESSAGES = {
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
}


def _problems(error: Any) -> list[tuple[str, str]]:
    """One pydantic error as ``(key path, message)`` pairs in the farm's words."""
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    path = _path(tuple(error["loc"]))
    if kind == _OWN_PATHS:
        return list(ctx.get("at") or [(path, str(ctx.get("text", error["msg"])))])
    bounds = {
        "greater_than_equal": ">=",
        "greater_than": ">",
        "less_than_equal": "<=",
        "less_than": "<",
    }
    if kind in bounds:
        limit = next(iter(ctx.values()))
        shown = f"{limit:g}" if isinstance(limit, float) else limit
        return [(path, f"must be {bounds[kind]} {shown}, got {_shown(got)}")]
    if kind == "string_too_short":
        return [(path, f"must not be empty, got {_shown(got)}")]
    if kind == "string_too_long":
        return [(path, f"must be at most {ctx.get('max_length')} characters, got {len(got)}")]
    if kind == "missing":
        return [(path, "is required")]
    text = _MESSAGES.get(kind) or str(error["msg"]).replace("Input should be", "must be")
    return [(path, f"{text}, got {_shown(got)}")]


class _Section(BaseModel):
    """A config mapping: strict types, no NaN, unknown keys refused naming them and the known ones."""

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        use_attribute_docstrings=True,
        validate_default=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            if isinstance(data, cls):
                return data
            raise _problem(f"must be a mapping of keys to values, got {_shown(data)}")
        unknown = [key for key in data if key not in cls.model_fields]
        if unknown:
            known = ", ".join(sorted(cls.model_fields))
            names = ", ".join(repr(clip(str(key), 64)) for key in unknown)
            raise _problem(f"unknown key{'s' if len(unknown) > 1 else ''} {names}; known keys: {known}")
        return data


class TenantConfig(_Section):
    """How one API key's tasks share the farm with the other keys' (read by the scheduler)."""

    weight: float = Field(default=1.0, gt=0)
    """Share of the farm under contention, relative to the other tenants' weights (> 0)."""
    max_concurrency: int | None = Field(default=None, ge=1)
    """Most tasks of this tenant rendering at once (>= 1); null: no cap of its own."""


class PoolConfig(_Section):
    """Video workers of one model: how many, and when idle ones are let go (read by the scheduler)."""

    min_workers: int = Field(default=0, ge=0)
    """Workers kept even when idle (>= 0)."""
    max_workers: int = Field(ge=1)
    """Most workers the pool grows to (>= 1; default: the config's ``workers``)."""
    idle_timeout_s: float = Field(default=300.0, ge=0)
    """Seconds a worker above ``min_workers`` may stay idle before it is stopped (>= 0)."""


class GatewayConfig(_Section):
    """Everything the gateway is configured with (CLI flags, optionally a YAML file).

    >>> GatewayConfig(workers=3).default_pool.max_workers
    3
    >>> GatewayConfig(api_keys="alice")
    Traceback (most recent call last):
    ...
    farm.gateway.config.ConfigError: api_keys: must be a list of non-empty strings, got 'alice'
    """

    grpc_port: int = Field(default=50051, ge=0, le=65535)
    """gRPC port (0: any free port)."""
    http_port: int = Field(default=8080, ge=0, le=65535)
    """HTTP port of the JSON face, result downloads, /metrics and /healthz (0: any free port)."""
    host: str = Field(default="0.0.0.0", min_length=1)
    """Address both ports bind to."""
    data_dir: str = Field(default="farm-data", min_length=1)
    """Directory of the task store, results and uploaded assets."""
    ray_address: str | None = Field(default=None, min_length=1)
    """Ray cluster to join; null starts an embedded local Ray."""
    workers: int = Field(default=2, ge=1)
    """Video worker actors per model pool (the default of every pool's ``max_workers``)."""
    gpus_per_worker: float = Field(default=0.0, ge=0)
    """GPUs each video worker reserves (0: CPU)."""
    api_keys: tuple[str, ...] = ()
    """Bearer keys, a list of non-empty strings without spaces; empty: no authentication."""
    allow_urls: tuple[str, ...] = ()
    """Hosts, IPs and CIDRs the farm may call although they are loopback/private (webhooks, uploads, media)."""
    max_queue: int = Field(default=100, ge=1)
    """Tasks waiting before new ones are refused (RESOURCE_EXHAUSTED / 429)."""
    price_per_gpu_second: float = Field(default=0.0, ge=0)
    """USD per GPU-second quoted in ``cost`` (``includeCost``)."""
    public_base_url: str | None = None
    """Base of videoURL (https://farm.example.com); null or empty: http://<host>:<http port>."""
    max_request_bytes: int = Field(default=MAX_REQUEST_BYTES, ge=1024, le=_INT32_MAX)
    """Largest gRPC message and HTTP body in bytes (tasks may carry inline media)."""
    max_asset_bytes: int = Field(default=MAX_MEDIA_BYTES, ge=1)
    """Largest asset UploadAsset stores, in bytes."""
    expire_interval_s: float = Field(default=30.0, gt=0)
    """Seconds between sweeps that delete expired results (past their task's ttl) from disk."""
    tls_cert: str | None = Field(default=None, min_length=1)
    """PEM certificate chain; with ``tls_key`` both ports serve TLS only."""
    tls_key: str | None = Field(default=None, min_length=1)
    """PEM private key of ``tls_cert``."""
    profiles: str | None = Field(default=None, min_length=1)
    """YAML model profiles (a file or a directory, docs/profiles.md) registered before serving, over the
    embedded default; a relative path in a config file is relative to that file."""
    max_tasks_per_request: int = Field(default=MAX_TASKS_PER_REQUEST, ge=1, le=10_000)
    """Most tasks (or getResponse items) one request may carry; more is refused naming the count."""
    delivery_concurrency: int = Field(default=8, ge=1, le=1024)
    """Uploads and webhook calls in flight at once."""
    tenants: dict[str, TenantConfig] = Field(default_factory=dict)
    """Per API key (each one of ``api_keys``): ``{weight, max_concurrency}``."""
    default_tenant: TenantConfig = Field(default_factory=lambda: TenantConfig())
    """What a key without an entry in ``tenants`` gets (and every caller when keys are off)."""
    pools: dict[str, PoolConfig] = Field(default_factory=dict)
    """Per model id: ``{min_workers, max_workers, idle_timeout_s}``."""
    default_pool: PoolConfig = Field(default_factory=lambda: PoolConfig(max_workers=2))
    """What a model without an entry in ``pools`` gets; its ``max_workers`` defaults to ``workers``."""
    finishers: int = Field(default=1, ge=1)
    """CPU actors that stitch chunks and encode results."""
    max_attempts: int = Field(default=3, ge=1)
    """Dispatches of one chunk (first try and retries after a lost worker) before its result fails."""
    retire_after_failures: int = Field(default=3, ge=1)
    """Consecutive failures after which a worker is replaced."""
    scheduler_name: str = Field(default="farm-scheduler", min_length=1, max_length=128)
    """Name of the detached scheduler actor in Ray (gateways sharing a cluster need different names)."""
    task_retention_s: float = Field(default=_WEEK_S, ge=0)
    """Seconds finished task rows are kept (GetResponse answers them) before they are pruned."""
    asset_retention_s: float = Field(default=_WEEK_S, gt=0)
    """Seconds an asset (an ``UploadAsset`` upload, or a task's inline media) is kept after it was
    stored or last named by a submitted task; an asset an unfinished task names is always kept."""
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """The gateway's event loop: ``uvloop`` (libuv; mostly 8-24% more Submit+GetResponse than
    ``asyncio`` in benchmarks/gateway.py) or the standard library's ``asyncio``."""

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError([problem for error in exc.errors() for problem in _problems(error)]) from None

    @property
    def tls(self) -> bool:
        """Whether both ports serve TLS."""
        return bool(self.tls_cert and self.tls_key)

    def pool(self, model_id: str) -> PoolConfig:
        """The pool settings of ``model_id``: its own entry, else ``default_pool``."""
        return self.pools.get(model_id, self.default_pool)

    def tenant(self, api_key: str | None) -> TenantConfig:
        """The share settings of ``api_key``: its own entry, else ``default_tenant``."""
        return self.tenants.get(api_key, self.default_tenant) if api_key is not None else self.default_tenant

    # ---------------------------------------------------------------- checks

    @model_validator(mode="before")
    @classmethod
    def _pool_defaults(cls, data: Any) -> Any:
        """A pool without ``max_workers`` takes ``workers`` (a mapping given as a value, copied)."""
        if not isinstance(data, Mapping):
            return data
        workers = data.get("workers", cls.model_fields["workers"].default)
        fallback = workers if isinstance(workers, int) and not isinstance(workers, bool) and workers >= 1 else 1
        data = dict(data)
        default_pool = data.get("default_pool", {})
        if isinstance(default_pool, Mapping) and "max_workers" not in default_pool:
            data["default_pool"] = {**default_pool, "max_workers": fallback}
        pools = data.get("pools")
        if isinstance(pools, Mapping):
            data["pools"] = {
                name: {**pool, "max_workers": fallback}
                if isinstance(pool, Mapping) and "max_workers" not in pool
                else pool
                for name, pool in pools.items()
            }
        return data

    @field_validator("api_keys", "allow_urls", mode="before")
    @classmethod
    def _list_of_strings(cls, value: Any) -> Any:
        # One string is not a list: iterating it would make each letter a key (``api_keys: alice``
        # used to let in any client sending ``a``).
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) and item.strip() for item in value):
            hint = " (write [] for none)" if value is None else ""
            raise _problem(f"must be a list of non-empty strings, got {_shown(value)}{hint}")
        return tuple(value)

    @field_validator("api_keys")
    @classmethod
    def _keys_are_usable(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for index, key in enumerate(keys):
            if re.search(r"\s", key) or not key.isprintable():
                # The Authorization header's key is stripped: a key with spaces could never match.
                raise _problem("", at=[(f"api_keys[{index}]", "must not contain spaces or control characters")])
            if key in keys[:index]:
                raise _problem("", at=[(f"api_keys[{index}]", f"repeats api_keys[{keys.index(key)}]")])
        return keys

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if not value:
            return None  # the chart writes "" for "not set"
        if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise _problem(f"must be an http(s) URL without query or fragment, got {_shown(value)}")
        return value

    @field_validator("tenants", "pools")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name in value:
            if not name.strip():
                raise _problem(f"names must be non-empty strings, got {_shown(name)}")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> GatewayConfig:
        problems: list[tuple[str, str]] = []
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append(("tls_cert", f"{self.tls_cert!r} with tls_key {self.tls_key!r}: TLS needs both or neither"))
        if self.grpc_port and self.grpc_port == self.http_port:
            problems.append(("http_port", f"{self.http_port} is grpc_port too; the two faces need two ports"))
        pools = [("default_pool", self.default_pool), *((f"pools.{k}", v) for k, v in self.pools.items())]
        for name, pool in pools:
            if pool.min_workers > pool.max_workers:
                problems.append(
                    (f"{name}.min_workers", f"{pool.min_workers} is more than max_workers ({pool.max_workers})")
                )
        for key in self.tenants:
            if key not in self.api_keys:
                anonymous = "" if self.api_keys else " (api_keys is empty: every caller is anonymous)"
                problems.append((f"tenants.{clip(key, 8)}", f"not one of api_keys{anonymous}"))
        if problems:
            raise _problem("; ".join(f"{path}: {text}" for path, text in problems), at=problems)
        return self

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> GatewayConfig:
        """Read a YAML config; ``overrides`` (non-None values, e.g. CLI flags given) win.

        Raises ``ConfigError`` naming the file and every bad key.
        """
        import yaml

        source = str(path)
        try:
            text = Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([("", f"cannot read the config ({exc.__class__.__name__}: {exc})")], source) from None
        try:
            raw = yaml.load(text, Loader=_StrictLoader) or {}
        except yaml.YAMLError as exc:
            raise ConfigError([("", f"not valid YAML: {clip(str(exc), 300)}")], source) from None
        if not isinstance(raw, dict):
            raise ConfigError([("", f"expected a mapping of keys at the top level, got {_shown(raw)}")], source)
        if isinstance(raw.get("profiles"), str) and raw["profiles"] and not Path(raw["profiles"]).is_absolute():
            # So a config and its profiles can move together (e.g. both in one ConfigMap).
            raw["profiles"] = str(Path(path).parent / raw["profiles"])
        values = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(exc.problems, source) from None


def _strict_mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
    """A YAML mapping that refuses a key written twice (YAML itself keeps the last silently)."""
    import yaml

    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {clip(str(key), 64)!r} appears twice", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


def _strict_loader() -> type:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """``yaml.SafeLoader`` that refuses duplicate keys."""

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _strict_mapping)
    return StrictLoader


_StrictLoader = _strict_loader()

#: Config file keys (YAML), in the order of ``GatewayConfig``'s fields.
CONFIG_KEYS: tuple[str, ...] = tuple(GatewayConfig.model_fields)
