"""Render helm/farm with Helm's own Go template engine (helm-python-sdk) and check what an operator relies on.

For the default values and every scenario under ``helm/farm/ci/``: the chart lints clean, every built-in
resource is valid against the Kubernetes OpenAPI schemas (kubernetes-validate, strict), the RayCluster
carries the fields KubeRay needs, values outside ``values.schema.json`` are refused, and with
``monitoring.enabled`` the monitors and the Grafana dashboard render, the dashboard querying only
metrics the gateway exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is in the test extra: pip install -e .[test]")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")

CHART = Path(__file__).resolve().parents[2] / "helm" / "farm"
SCENARIOS = sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
RELEASE, NAMESPACE = "farm", "render"
#: Oldest Kubernetes the chart claims (Chart.yaml kubeVersion; native gRPC probes are GA in 1.27) and the newest schemas shipped.
KUBE_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
#: Resources from CRDs, which kubernetes-validate has no schemas for; checked field by field below.
CRD_GROUPS = ("ray.io/", "monitoring.coreos.com/")


def scenario_values(name: str) -> dict:
    return yaml.safe_load((CHART / "ci" / name).read_text()) or {}


@pytest.fixture(scope="module")
def chart():
    return helm.Chart.load(CHART)


def render(chart, values: dict | None = None, *, name: str = RELEASE) -> list[dict]:
    """Every resource the chart renders, parsed."""
    manifests = chart.render(values or {}, name=name, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def farm_config(docs: list[dict]) -> dict:
    """The ConfigMap with config.yaml and profiles.yaml (the dashboard has its own)."""
    return next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == f"{RELEASE}-config")


@pytest.fixture(scope="module", params=SCENARIOS)
def scenario(request, chart):
    values = scenario_values(request.param)
    return request.param, values, render(chart, values)


def test_scenarios_exist():
    assert "default-values.yaml" in SCENARIOS and len(SCENARIOS) >= 4


# --- lint ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_lint_is_clean(name):
    report = helm.lint(
        CHART, scenario_values(name), strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSIONS[0]}"
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_lint_reports_bad_values():
    """The lint above is not vacuous: it sees schema violations."""
    report = helm.lint(CHART, {"gateway": {"replicas": 5}}, strict=True)
    assert any("/gateway/replicas" in error for error in report["errors"])


# --- Kubernetes schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_builtin_resources_are_valid_kubernetes(scenario, kube_version):
    name, _, docs = scenario
    builtin = [d for d in docs if not d["apiVersion"].startswith(CRD_GROUPS)]
    assert {"Deployment", "Service", "ConfigMap"} <= {d["kind"] for d in builtin}
    for doc in builtin:
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} at {list(error.path)}: {error.message}")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_ray_pod_templates_are_valid_pods(scenario, kube_version):
    """KubeRay copies each group's template into Pods: check them against the Pod schema."""
    name, _, docs = scenario
    cluster = one(docs, "RayCluster")["spec"]
    templates = [("head", cluster["headGroupSpec"]["template"])]
    templates += [(g["groupName"], g["template"]) for g in cluster["workerGroupSpecs"]]
    for group, template in templates:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"ray-{group}", **template["metadata"]},
            "spec": template["spec"],
        }
        try:
            kubernetes_validate.validate(pod, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: Ray group {group} at {list(error.path)}: {error.message}")


# --- RayCluster ---------------------------------------------------------------------------------------


def test_raycluster_has_the_fields_kuberay_requires(scenario):
    name, values, docs = scenario
    cluster = one(docs, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["rayVersion"] and spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), "KubeRay wants string values"
    head_container = head["template"]["spec"]["containers"][0]
    assert head_container["resources"]["requests"]
    assert {p["containerPort"] for p in head_container["ports"]} >= {6379, 10001, 8080}

    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    enabled = {k for k, v in values.get("rayCluster", {}).get("workerGroups", {}).items() if v.get("enabled", True)}
    assert "video" in groups and enabled <= set(groups)
    for group_name, group in groups.items():
        assert isinstance(group["rayStartParams"], dict), group_name
        assert all(isinstance(v, str) for v in group["rayStartParams"].values()), group_name
        for field in ("replicas", "minReplicas", "maxReplicas"):
            assert isinstance(group[field], int), (group_name, field)
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group_name
        containers = group["template"]["spec"]["containers"]
        assert containers and all("resources" in c for c in containers), group_name
        mounts = {m["name"]: m for m in containers[0]["volumeMounts"]}
        shared = values.get("artifacts", {}).get("mountInRayPods", True)
        assert ("artifacts" in mounts) is shared, group_name
        if "weights" in mounts:
            assert mounts["weights"]["readOnly"] is True

    video = groups["video"]["template"]["spec"]["containers"][0]["resources"]
    assert int(video["limits"]["nvidia.com/gpu"]) >= 1
    assert int(video["requests"]["nvidia.com/gpu"]) >= 1


#: Field names of KubeRay's ray.io/v1 RayCluster types (ray-operator/apis/ray/v1/raycluster_types.go).
RAYCLUSTER_SPEC_FIELDS = {
    "headGroupSpec",
    "workerGroupSpecs",
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headServiceAnnotations",
    "suspend",
}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template"}
WORKER_GROUP_FIELDS = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "numOfHosts",
    "rayStartParams",
    "template",
    "scaleStrategy",
}
AUTOSCALER_FIELDS = {
    "resources",
    "image",
    "imagePullPolicy",
    "env",
    "envFrom",
    "volumeMounts",
    "securityContext",
    "idleTimeoutSeconds",
    "upscalingMode",
}


def test_raycluster_uses_only_kuberay_field_names(scenario):
    """The CRD prunes unknown fields silently: a misspelt one would just vanish on the cluster."""
    name, _, docs = scenario
    spec = one(docs, "RayCluster")["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC_FIELDS, name
    assert {"headGroupSpec", "workerGroupSpecs"} <= set(spec)
    assert set(spec["headGroupSpec"]) <= HEAD_GROUP_FIELDS
    assert set(spec.get("autoscalerOptions", {})) <= AUTOSCALER_FIELDS
    assert spec.get("autoscalerOptions", {}).get("upscalingMode", "Default") in {
        "Default",
        "Aggressive",
        "Conservative",
    }
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS, group["groupName"]
        assert {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group)


def test_default_groups_video_audio_cpu(chart):
    groups = [g["groupName"] for g in one(render(chart), "RayCluster")["spec"]["workerGroupSpecs"]]
    assert sorted(groups) == ["audio", "cpu", "video"]


def test_scaling_values_reach_the_raycluster(chart):
    docs = render(
        chart, {"rayCluster": {"workerGroups": {"video": {"replicas": 3, "minReplicas": 2, "maxReplicas": 12}}}}
    )
    video = next(g for g in one(docs, "RayCluster")["spec"]["workerGroupSpecs"] if g["groupName"] == "video")
    assert (video["replicas"], video["minReplicas"], video["maxReplicas"]) == (3, 2, 12)


def test_empty_ray_start_params_render_as_an_empty_map(chart):
    extra = {
        "enabled": True,
        "replicas": 0,
        "minReplicas": 0,
        "maxReplicas": 1,
        "rayStartParams": {},
        "resources": {"requests": {"cpu": "1"}},
    }
    docs = render(chart, {"rayCluster": {"workerGroups": {"spare": extra}}})
    groups = {g["groupName"]: g for g in one(docs, "RayCluster")["spec"]["workerGroupSpecs"]}
    assert groups["spare"]["rayStartParams"] == {}


def test_per_group_scheduling_values_are_rendered(chart):
    docs = render(chart, scenario_values("large-gpu-pool-values.yaml"))
    groups = {g["groupName"]: g["template"]["spec"] for g in one(docs, "RayCluster")["spec"]["workerGroupSpecs"]}
    assert groups["video-h200"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H200"}
    assert "podAntiAffinity" in groups["video"]["affinity"]
    assert groups["video"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nodeSelector" not in groups["cpu"], "unset blocks must vanish"


def test_audio_group_on_cpu_asks_for_no_gpu(chart):
    docs = render(chart, scenario_values("hostpath-cpu-audio-values.yaml"))
    groups = {g["groupName"]: g for g in one(docs, "RayCluster")["spec"]["workerGroupSpecs"]}
    assert "cpu" not in groups
    resources = groups["audio"]["template"]["spec"]["containers"][0]["resources"]
    assert "nvidia.com/gpu" not in resources["requests"]


# --- gateway ------------------------------------------------------------------------------------------


def test_gateway_joins_the_raycluster_and_serves_both_ports(chart):
    docs = render(chart)
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    gateway = next(c for c in pod["containers"] if c["name"] == "gateway")
    args = gateway["args"]
    head_service = f"{RELEASE}-ray-head-svc"
    assert args[0] == "serve"
    assert f"--ray-address=ray://{head_service}.{NAMESPACE}.svc:10001" in args
    assert "--grpc-port=50051" in args and "--http-port=8080" in args and "--workers=4" in args
    assert "--config=/run/farm/config.yaml" in args
    assert gateway["livenessProbe"]["grpc"]["port"] == 50051
    assert gateway["readinessProbe"]["grpc"]["port"] == 50051
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service")
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": 50051, "http": 8080}
    assert service["spec"]["selector"].items() <= labels.items()
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(docs, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    # The API keys reach the config only through the Secret, never through the ConfigMap.
    config = yaml.safe_load(farm_config(docs)["data"]["config.yaml"])
    assert "api_keys" not in config and config["max_queue"] == 256
    assert {v["name"] for v in pod["volumes"]} >= {"artifacts", "config", "api-keys"}


@pytest.mark.parametrize("name", SCENARIOS)
def test_gateway_command_and_config_are_what_farm_serve_accepts(chart, name):
    """The rendered args parse with the real ``farm serve`` parser and config.yaml has only known keys."""
    try:
        from farm.cli.main import _build_parser
        from farm.gateway.server import CONFIG_KEYS, GatewayConfig
    except ImportError as error:
        pytest.skip(f"the gateway is not in this tree yet: {error}")
    docs = render(chart, scenario_values(name))
    gateway = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    try:
        parsed = _build_parser().parse_args(gateway["args"])
    except SystemExit:
        pytest.fail(f"farm {' '.join(gateway['args'])} is refused by the CLI")
    assert parsed.command == "serve" and parsed.ray_address and parsed.config == "/run/farm/config.yaml"
    config = yaml.safe_load(farm_config(docs)["data"]["config.yaml"])
    config["api_keys"] = ["k" * 16]  # what the init container adds from the Secret
    assert set(config) <= set(CONFIG_KEYS), sorted(set(config) - set(CONFIG_KEYS))
    GatewayConfig(**config)


def test_explicit_ray_address_wins(chart):
    docs = render(chart, {"gateway": {"rayAddress": "farm-ray-head-svc:6379"}})
    assert (
        "--ray-address=farm-ray-head-svc:6379"
        in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_api_keys_secret_created_or_existing(chart):
    created = render(chart, scenario_values("hostpath-cpu-audio-values.yaml"))
    secret = one(created, "Secret")
    assert secret["stringData"]["api-keys"].split() == ["0123456789abcdef0123456789abcdef"]
    existing = render(chart, scenario_values("weights-pvc-values.yaml"))
    assert by_kind(existing, "Secret") == []
    volumes = {v["name"]: v for v in one(existing, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"] == {
        "secretName": "farm-api-keys",
        "items": [{"key": "keys", "path": "api-keys"}],
    }


def test_weights_mount_read_only_and_passed_to_the_gateway(chart):
    docs = render(chart, scenario_values("weights-pvc-values.yaml"))
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["weights"] == {"name": "weights", "mountPath": "/models", "readOnly": True}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["weights"]["persistentVolumeClaim"] == {"claimName": "model-weights", "readOnly": True}
    assert by_kind(docs, "PersistentVolumeClaim") == [], "existing claims: the chart creates none"
    profiles = yaml.safe_load(farm_config(docs)["data"]["profiles.yaml"])
    assert profiles["profiles"][0]["video"]["weights"] == "/models/Wan2.1-VACE-1.3B-diffusers"
    hostpath = render(chart, scenario_values("hostpath-cpu-audio-values.yaml"))
    video = next(g for g in one(hostpath, "RayCluster")["spec"]["workerGroupSpecs"] if g["groupName"] == "video")
    volumes = {v["name"]: v for v in video["template"]["spec"]["volumes"]}
    assert volumes["weights"]["hostPath"] == {"path": "/mnt/models", "type": "Directory"}


def test_long_release_names_fit_kubernetes_limits(chart):
    docs = render(chart, {"monitoring": {"enabled": True}}, name="a-very-long-release-name-for-the-render-farm-abc")
    for doc in docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
    # KubeRay appends "-head-svc" and group suffixes to the RayCluster name.
    assert len(one(docs, "RayCluster")["metadata"]["name"]) <= 56


# --- schema -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"unknownTopLevel": True},
        {"gateway": {"replicas": 2}},
        {"gateway": {"workers": 0}},
        {"gateway": {"service": {"grpcPort": 70000}}},
        {"image": {"pullPolicy": "Sometimes"}},
        {"weights": {"type": "nfs"}},
        {"weights": {"mountPath": "models"}},
        {"rayCluster": {"workerGroups": {"video": {"maxReplicas": -1}}}},
        {"rayCluster": {"workerGroups": {"video": {"replicas": "two"}}}},
        {"rayCluster": {"workerGroups": {"Bad_Name": {"enabled": True}}}},
        {"rayCluster": {"head": {"gpus": 1}}},
        {"monitoring": {"enabled": "yes"}},
        {"monitoring": {"interval": "often"}},
        {"rayCluster": {"autoscalerOptions": {"upscalingMode": "Fast"}}},
        {"apiKeys": {"keys": ["short"]}},
        {"config": {"max_queue": 0}},
        {"config": {"typo_key": 1}},
    ],
)
def test_values_outside_the_schema_are_refused(chart, values):
    with pytest.raises(helm.HelmValuesError):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"rayCluster": {"workerGroups": {"video": {"replicas": 20}}}},
            "minReplicas (0) <= replicas (20) <= maxReplicas (8)",
        ),
        ({"gateway": {"gpusPerWorker": 2}}, "gpusPerWorker (2)"),
    ],
)
def test_inconsistent_values_fail_with_a_clear_message(chart, values, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        chart.render(values, name=RELEASE, namespace=NAMESPACE)


def test_every_value_is_documented():
    """helm-docs style: every leaf of values.yaml has a ``# --`` comment on it or on an ancestor."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    key = re.compile(r"^(\s*)([A-Za-z][\w.-]*):(.*)$")
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the open parents
    undocumented = []
    for index, line in enumerate(lines):
        match = key.match(line)
        if not match:
            continue
        indent = len(match.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = index > 0 and lines[index - 1].strip().startswith("# --")
        # a comment may run over several lines: look back through the comment block
        back = index - 1
        while back >= 0 and lines[back].strip().startswith("#"):
            documented |= lines[back].strip().startswith("# --")
            back -= 1
        inherited = documented or any(d for _, d in stack)
        nxt = next((ln for ln in lines[index + 1 :] if ln.strip() and not ln.strip().startswith("#")), "")
        is_leaf = match.group(3).strip() != "" or len(nxt) - len(nxt.lstrip()) <= indent
        if is_leaf and not inherited:
            undocumented.append(match.group(2))
        stack.append((indent, inherited))
    assert undocumented == []


def test_schema_accepts_the_defaults_and_every_scenario(chart):
    chart.validate_schema({})
    for name in SCENARIOS:
        chart.validate_schema(scenario_values(name))


# --- monitoring ---------------------------------------------------------------------------------------


def test_monitoring_off_renders_no_monitors(chart):
    kinds = {d["kind"] for d in render(chart)}
    assert not kinds & {"ServiceMonitor", "PodMonitor"}
    assert not any(d["metadata"]["name"].endswith("-dashboard") for d in by_kind(render(chart), "ConfigMap"))


def test_monitoring_renders_monitors_and_dashboard(chart):
    docs = render(chart, scenario_values("monitoring-values.yaml"))
    service = one(docs, "Service")
    service_monitor = one(docs, "ServiceMonitor")
    assert service_monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    endpoint = service_monitor["spec"]["endpoints"][0]
    assert endpoint["path"] == "/metrics" and endpoint["interval"] == "15s"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert service_monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()

    pod_monitor = one(docs, "PodMonitor")
    cluster = one(docs, "RayCluster")
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    ray_ports = {p["name"] for p in cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]}
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] in ray_ports

    dashboards = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboards[0]["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(dashboards[0]["data"]["farm.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "farm.json").read_text())

    # Prometheus may scrape the gateway even when API clients are restricted.
    rules = one(docs, "NetworkPolicy")["spec"]["ingress"]
    assert any(
        r["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == "monitoring" for r in rules
    )


def test_packaged_chart_carries_the_dashboard(tmp_path):
    """helm package honours .helmignore: the archive must still hold the dashboard and the schema."""
    archive = helm.package(CHART, destination=tmp_path)
    packaged = helm.Chart.load_archive(Path(archive).read_bytes())
    docs = render(packaged, {"monitoring": {"enabled": True}})
    dashboard = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard"))
    assert json.loads(dashboard["data"]["farm.json"])["panels"]
    with pytest.raises(helm.HelmValuesError):
        packaged.render({"bogus": 1}, name=RELEASE, namespace=NAMESPACE)


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((CHART / "dashboards" / "farm.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if isinstance(v.get("query"), dict)]
    return exprs


def exported_metric_names() -> set[str]:
    try:
        from farm.gateway.metrics import FarmMetrics
    except ModuleNotFoundError as error:
        if error.name in ("farm.gateway.metrics", "farm"):
            pytest.skip("farm/gateway/metrics.py is not in this tree: no exported names to compare with")
        raise
    return FarmMetrics().names()


def test_dashboard_queries_only_exported_metrics():
    exported = exported_metric_names()
    histograms = {name for name in exported if not name.endswith("_total")}
    used = set()
    for expr in dashboard_exprs():
        for name in re.findall(r"\b(farm_[a-z0-9_]+)", expr):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            # _bucket/_sum/_count belong to histograms only; a counter's name is used as exported.
            used.add(base if base != name and base in histograms else name)
    assert used, "the dashboard queries no farm_* metric"
    assert used <= exported, f"not exported by the gateway: {sorted(used - exported)}"


def test_operating_doc_explains_every_exported_metric():
    exported = exported_metric_names()
    doc = (CHART.parents[1] / "docs" / "operating.md").read_text()
    missing = sorted(name for name in exported if f"`{name}`" not in doc)
    assert missing == [], f"docs/operating.md does not explain {missing}"


def test_dashboard_shows_what_operators_watch():
    """Throughput, queue depth, stage latencies, worker utilisation and errors each have a panel."""
    exprs = "\n".join(dashboard_exprs())
    for needle in (
        "farm_frames_rendered_total",
        "farm_queue_depth",
        "farm_stage_seconds_bucket",
        'farm_workers{job=~"$job",state="busy"}',
        "farm_render_failures_total",
        "farm_delivery_failures_total",
    ):
        assert needle in exprs, needle


def test_profiles_reach_the_gateway_in_the_loader_format(chart, tmp_path):
    """The ConfigMap's profiles.yaml is what ``farm serve --profiles`` reads (same loader, same format),
    and the gateway gets the flag only when profiles are configured."""
    from models.profile_config import load_profiles

    docs = render(chart, scenario_values("weights-pvc-values.yaml"))
    args = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--profiles=/etc/farm/profiles.yaml" in args
    path = tmp_path / "profiles.yaml"
    path.write_text(farm_config(docs)["data"]["profiles.yaml"])
    [profile] = load_profiles(path)
    assert (profile.model_id, profile.extra["pipeline"], profile.extra["audio_weights"]) == (
        "wan-ai:wan2.1-vace@1.3b",
        "WanVACEPipeline",
        "/models/stable-audio-open-1.0",
    )
    # The shipped profiles pass the chart's schema as values.
    shipped = [
        p
        for f in sorted((CHART.parents[1] / "profiles").glob("*.yaml"))
        for p in yaml.safe_load(f.read_text())["profiles"]
    ]
    docs = render(chart, {"profiles": shipped})
    path.write_text(farm_config(docs)["data"]["profiles.yaml"])
    assert len(load_profiles(path)) == 3
    default = render(chart)
    assert not any(
        a.startswith("--profiles")
        for a in one(default, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    assert yaml.safe_load(farm_config(default)["data"]["profiles.yaml"]) == {"profiles": []}
