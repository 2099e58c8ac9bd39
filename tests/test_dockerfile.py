"""The Dockerfile cannot be built here (no Docker engine): check what can be checked without one.

Every file it COPYs exists and survives .dockerignore, it ends as a non-root user whose uid is the one
the Helm chart runs pods as, it installs the same torch pin as the Makefile and the farm itself, and it
exposes the ports the chart's gateway Service targets.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    assert not current, "Dockerfile ends inside a continuation"
    result = []
    for text in joined:
        keyword, _, args = text.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def of(keyword: str) -> list[str]:
    return [args for key, args in instructions() if key == keyword]


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def ignored(relative: str) -> bool:
    for pattern in dockerignore_patterns():
        if pattern.startswith("!"):
            continue
        candidates = [pattern, pattern.removeprefix("**/")]
        parts = Path(relative).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(prefix, c) for prefix in prefixes for c in candidates):
            return True
    return False


def copy_sources() -> list[str]:
    sources = []
    for args in of("COPY") + of("ADD"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert not any(w.startswith("--from") for w in shlex.split(args)), "multi-stage COPY: adapt this test"
        sources.extend(words[:-1])
    return sources


def test_copied_files_exist_and_are_not_dockerignored():
    sources = copy_sources()
    assert {"pyproject.toml", "farm"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not ignored(source), f"COPY {source}: excluded by .dockerignore"


def test_every_installed_package_is_copied():
    """pip install . needs each package setuptools finds (tool.setuptools.packages.find) and the readme."""
    text = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"\[tool\.setuptools\.packages\.find\]\s*include\s*=\s*\[([^\]]*)\]", text)
    packages = {p.strip().strip('"').rstrip("*") for p in include.group(1).split(",")}
    readme = re.search(r'^readme\s*=\s*"([^"]+)"', text, re.M).group(1)
    assert packages | {readme} <= set(copy_sources())


def test_runs_as_the_non_root_user_the_chart_expects():
    users = of("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root")
    final = [key for key, _ in instructions()]
    last_user = max(i for i, key in enumerate(final) if key == "USER")
    assert last_user > max(i for i, key in enumerate(final) if key == "RUN"), (
        "every install step runs before the switch to the runtime user"
    )
    values = yaml.safe_load((ROOT / "helm" / "farm" / "values.yaml").read_text())
    assert int(user) == values["podSecurityContext"]["runAsUser"]
    assert values["podSecurityContext"]["runAsNonRoot"] is True


def test_installs_cuda_torch_pin_and_the_farm():
    runs = " ".join(of("RUN"))
    makefile = (ROOT / "Makefile").read_text()
    torch_spec = re.search(r"^TORCH_SPEC \?= (\S+)", makefile, re.M).group(1)
    assert f"pip install {torch_spec}" in runs
    assert re.search(r"pip install \.( |$)", runs)
    runs_order = of("RUN")
    assert next(i for i, r in enumerate(runs_order) if "torch==" in r) < next(
        i for i, r in enumerate(runs_order) if re.search(r"pip install \.( |$)", r)
    ), "torch pin must come before the farm"


def test_one_image_for_gateway_and_ray_pods():
    entrypoint = of("ENTRYPOINT")[-1]
    assert '"farm"' in entrypoint
    runs = " ".join(of("RUN"))
    for tool in ("bash", "wget"):  # KubeRay's ray start command and raylet probes
        assert tool in runs
    exposed = {int(p) for args in of("EXPOSE") for p in args.split()}
    values = yaml.safe_load((ROOT / "helm" / "farm" / "values.yaml").read_text())
    service = values["gateway"]["service"]
    assert {service["grpcPort"], service["httpPort"]} <= exposed


def test_base_python_satisfies_the_project():
    base = of("FROM")[0]
    match = re.search(r"python:(\d+)\.(\d+)", base)
    assert match, f"expected a python base image, got {base}"
    required = re.search(r'requires-python\s*=\s*">=(\d+)\.(\d+)"', (ROOT / "pyproject.toml").read_text())
    assert tuple(map(int, match.groups())) >= tuple(map(int, required.groups()))


def test_chart_ray_version_matches_the_pinned_ray():
    pin = re.search(r'"ray\[default\]==([\d.]+)"', (ROOT / "pyproject.toml").read_text())
    if pin is None:
        pytest.skip("ray is not pinned exactly in pyproject.toml")
    values = yaml.safe_load((ROOT / "helm" / "farm" / "values.yaml").read_text())
    assert values["rayCluster"]["rayVersion"] == pin.group(1)
