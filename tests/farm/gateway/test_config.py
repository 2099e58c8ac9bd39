"""GatewayConfig: every key bounded and documented, bad configs refused at start naming the key."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
import yaml

import farm.gateway.config
from farm.gateway.config import CONFIG_KEYS, ConfigError, GatewayConfig, PoolConfig, TenantConfig

#: The keys (and defaults) of the dataclass this class replaced: a config file that worked keeps working.
OLD_DEFAULTS = {
    "grpc_port": 50051,
    "http_port": 8080,
    "host": "0.0.0.0",
    "data_dir": "farm-data",
    "ray_address": None,
    "workers": 2,
    "gpus_per_worker": 0.0,
    "api_keys": (),
    "allow_urls": (),
    "max_queue": 100,
    "price_per_gpu_second": 0.0,
    "public_base_url": None,
    "max_request_bytes": 64 * 1024 * 1024,
    "max_asset_bytes": 50 * 1024 * 1024,
    "expire_interval_s": 30.0,
    "tls_cert": None,
    "tls_key": None,
    "profiles": None,
}


def load(tmp_path: Path, text: str, **overrides) -> GatewayConfig:
    path = tmp_path / "farm.yaml"
    path.write_text(text)
    return GatewayConfig.from_file(path, **overrides)


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_defaults_are_the_old_ones_plus_the_new_keys():
    config = GatewayConfig()
    assert {key: getattr(config, key) for key in OLD_DEFAULTS} == OLD_DEFAULTS
    assert set(OLD_DEFAULTS) < set(CONFIG_KEYS) == set(GatewayConfig.model_fields)
    assert config.max_tasks_per_request == 100 and config.finishers == 1
    assert (config.max_attempts, config.retire_after_failures) == (3, 3)
    assert config.scheduler_name == "farm-scheduler" and config.task_retention_s == 7 * 24 * 3600
    assert config.asset_retention_s == 7 * 24 * 3600
    assert config.event_loop == "uvloop"
    assert config.default_tenant == TenantConfig(weight=1.0, max_concurrency=None)
    assert config.default_pool == PoolConfig(min_workers=0, max_workers=2, idle_timeout_s=300.0)
    assert config.tenants == {} and config.pools == {} and config.tls is False


def test_every_key_is_documented():
    for model in (GatewayConfig, TenantConfig, PoolConfig):
        undocumented = [name for name, field in model.model_fields.items() if not field.description]
        assert undocumented == [], f"{model.__name__}: {undocumented}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api_keys: alice", "farm.yaml: api_keys: must be a list of non-empty strings, got 'alice'"),
        ("api_keys: [alice, '']", "api_keys: must be a list of non-empty strings, got ['alice', '']"),
        ("api_keys: [alice, 7]", "api_keys: must be a list of non-empty strings, got ['alice', 7]"),
        ("api_keys:", "api_keys: must be a list of non-empty strings, got None (write [] for none)"),
        ("api_keys: ['al ice']", "api_keys[0]: must not contain spaces or control characters"),
        ("api_keys: [alice, bob, alice]", "api_keys[2]: repeats api_keys[0]"),
        ("allow_urls: 127.0.0.1", "allow_urls: must be a list of non-empty strings, got '127.0.0.1'"),
        ("workers: -3", "workers: must be >= 1, got -3"),
        ("workers: 2.5", "workers: must be an integer, got 2.5"),
        ("workers: true", "workers: must be an integer, got True"),
        ("workers: '3'", "workers: must be an integer, got '3'"),
        ("grpc_port: 65536", "grpc_port: must be <= 65535, got 65536"),
        ("http_port: -1", "http_port: must be >= 0, got -1"),
        ("grpc_port: 9000\nhttp_port: 9000", "http_port: 9000 is grpc_port too"),
        ("max_queue: 0", "max_queue: must be >= 1, got 0"),
        ("price_per_gpu_second: .nan", "price_per_gpu_second: must be a finite number, got nan"),
        ("gpus_per_worker: -1", "gpus_per_worker: must be >= 0, got -1"),
        ("expire_interval_s: 0", "expire_interval_s: must be > 0, got 0"),
        ("max_request_bytes: 4294967296", "max_request_bytes: must be <= 2147483647"),
        ("data_dir: ''", "data_dir: must not be empty"),
        ("public_base_url: farm.example.com", "public_base_url: must be an http(s) URL"),
        ("tls_cert: /etc/farm/tls.crt", "tls_cert: '/etc/farm/tls.crt' with tls_key None: TLS needs both or neither"),
        ("max_tasks_per_request: 0", "max_tasks_per_request: must be >= 1, got 0"),
        ("finishers: 0", "finishers: must be >= 1, got 0"),
        ("max_attempts: 0", "max_attempts: must be >= 1, got 0"),
        ("retire_after_failures: -1", "retire_after_failures: must be >= 1, got -1"),
        ("task_retention_s: -5", "task_retention_s: must be >= 0, got -5"),
        ("asset_retention_s: 0", "asset_retention_s: must be > 0, got 0"),
        ("scheduler_name: ''", "scheduler_name: must not be empty"),
        ("delivery_concurrency: 0", "delivery_concurrency: must be >= 1, got 0"),
        ("event_loop: trio", "event_loop: must be 'uvloop' or 'asyncio', got 'trio'"),
        ("worker: 3", "farm.yaml: unknown key 'worker'; known keys: allow_urls, api_keys, "),
        ("tenants: {alice: {weight: 0}}", "tenants.alice.weight: must be > 0"),
        ("api_keys: [alice]\ntenants: {alice: {max_concurrency: 0}}", "tenants.alice.max_concurrency: must be >= 1, got 0"),
        ("api_keys: [alice]\ntenants: {alice: {wieght: 2}}", "tenants.alice: unknown key 'wieght'; known keys: max_concurrency, weight"),
        ("api_keys: [alice]\ntenants: {carol: {}}", "tenants.carol: not one of api_keys"),
        ("tenants: {carol: {}}", "tenants.carol: not one of api_keys (api_keys is empty: every caller is anonymous)"),
        ("default_tenant: {weight: -1}", "default_tenant.weight: must be > 0"),
        (
            "pools: {'skywork:skyreels@v4': {min_workers: 4, max_workers: 2}}",
            "farm.yaml: pools.skywork:skyreels@v4.min_workers: 4 is more than max_workers (2)",
        ),
        ("pools: {m: {max_workers: 0}}", "pools.m.max_workers: must be >= 1, got 0"),
        ("pools: {m: {idle_timeout_s: -1}}", "pools.m.idle_timeout_s: must be >= 0, got -1"),
        ("pools: {m: 3}", "pools.m: must be a mapping of keys to values, got 3"),
        ("pools: [m]", "pools: must be a mapping, got ['m']"),
        ("workers: 1\ndefault_pool: {min_workers: 2}", "default_pool.min_workers: 2 is more than max_workers (1)"),
        ("- api_keys", "farm.yaml: expected a mapping of keys at the top level"),
        ("api_keys: [a]\napi_keys: [b]", "farm.yaml: not valid YAML: "),
        ("workers: [1", "farm.yaml: not valid YAML: "),
    ],
)  # fmt: skip
def test_bad_configs_are_refused_naming_the_key(tmp_path, text, message):
    assert message in refusal(tmp_path, text)


def test_every_problem_is_reported_at_once(tmp_path):
    problems = refusal(tmp_path, "api_keys: alice\nworkers: -3\nmax_queue: 0\n").splitlines()
    assert [line.split(":")[1].strip() for line in problems] == ["workers", "api_keys", "max_queue"]


def test_a_refused_config_is_a_value_error_the_cli_reports(tmp_path):
    # farm serve prints "error: bad configuration: <message>" for a ValueError and exits 2.
    with pytest.raises(ValueError, match="api_keys: must be a list"):
        GatewayConfig(api_keys="alice")
    with pytest.raises(ValueError, match="cannot read the config"):
        GatewayConfig.from_file(tmp_path / "missing.yaml")


def test_from_file_overrides_and_relative_profiles(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "farm.yaml"
    path.write_text("profiles: profiles.yaml\nworkers: 3\nhttp_port: 9000\napi_keys: [alice]\n")
    config = GatewayConfig.from_file(path, workers=None, http_port=9100, grpc_port=None)
    assert config.profiles == str(tmp_path / "conf" / "profiles.yaml")
    assert (config.workers, config.http_port, config.grpc_port) == (3, 9100, 50051)
    assert config.api_keys == ("alice",)
    assert GatewayConfig.from_file(path, profiles="/elsewhere").profiles == "/elsewhere"
    path.write_text("profiles: /abs/profiles.yaml\n")
    assert GatewayConfig.from_file(path).profiles == "/abs/profiles.yaml"
    path.write_text("")
    assert GatewayConfig.from_file(path) == GatewayConfig()
    # A bad override is named like a bad key.
    with pytest.raises(ConfigError, match="workers: must be >= 1, got 0"):
        GatewayConfig.from_file(path, workers=0)


def test_tls_needs_both_files(tmp_path):
    config = load(tmp_path, "tls_cert: /tls/cert.pem\ntls_key: /tls/key.pem\n")
    assert config.tls


def test_pools_and_tenants(tmp_path):
    config = load(
        tmp_path,
        """
workers: 4
api_keys: [alice, bob]
tenants: {alice: {weight: 3, max_concurrency: 2}}
default_tenant: {weight: 0.5}
pools:
  skywork:skyreels@v4: {min_workers: 1, idle_timeout_s: 60}
  wan-ai:wan2.1-vace@1.3b: {max_workers: 8}
default_pool: {idle_timeout_s: 0}
""",
    )
    assert config.tenant("alice") == TenantConfig(weight=3.0, max_concurrency=2)
    assert config.tenant("bob") == config.tenant(None) == TenantConfig(weight=0.5)
    assert config.pool("skywork:skyreels@v4") == PoolConfig(min_workers=1, max_workers=4, idle_timeout_s=60.0)
    assert config.pool("wan-ai:wan2.1-vace@1.3b").max_workers == 8
    assert config.pool("other") == PoolConfig(min_workers=0, max_workers=4, idle_timeout_s=0.0)


def test_the_config_is_immutable():
    config = GatewayConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.workers = 5  # type: ignore[misc]  # the point: it is frozen


def test_docstring_examples():
    assert doctest.testmod(farm.gateway.config).failed == 0


# --- the Helm chart writes configs this class accepts -----------------------------------------------------

CHART = Path(__file__).resolve().parents[3] / "helm" / "farm"


@pytest.mark.parametrize("scenario", sorted(p.name for p in (CHART / "ci").glob("*.yaml")))
def test_the_charts_rendered_config_is_accepted(scenario):
    helm = pytest.importorskip("helm_python", reason="helm-python-sdk is in the test extra")
    values = yaml.safe_load((CHART / "ci" / scenario).read_text()) or {}
    manifests = helm.Chart.load(CHART).render(values, name="farm", namespace="render")
    docs = [
        doc for path, text in manifests.items() if path.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc
    ]
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "farm-config"]
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    config["api_keys"] = ["k" * 16]  # what the init container adds from the Secret
    GatewayConfig(**config)
