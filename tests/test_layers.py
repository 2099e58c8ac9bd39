"""The package layers, as docs/architecture.md draws them, hold: imports only point downwards.

    cli -> gateway -> scheduler -> render -> workers -> {io, models} -> domain

``kernels`` (frame kernels) may be used by io, workers and render; ``models`` imports only
``farm.domain``; the generated gRPC code (``farm.v1``) belongs to the gateway and the CLI. Every
import counts, including those inside functions, so a lazy import cannot hide an edge against the
direction.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: What each layer may import (itself included).
ALLOWED: dict[str, set[str]] = {
    "domain": {"domain"},
    "kernels": {"kernels"},
    "models": {"models", "domain"},
    "io": {"io", "domain", "kernels"},
    "workers": {"workers", "io", "models", "kernels", "domain"},
    "render": {"render", "workers", "io", "models", "kernels", "domain"},
    "scheduler": {"scheduler", "render", "workers", "io", "models", "kernels", "domain"},
    "gateway": {"gateway", "v1", "scheduler", "render", "workers", "io", "models", "kernels", "domain"},
    "cli": {"cli", "gateway", "v1", "scheduler", "render", "workers", "io", "models", "kernels", "domain"},
    "v1": {"v1"},
}


def layer_of(module: str) -> str | None:
    """``farm.render.stitch`` -> ``render``; ``models.wan`` -> ``models``; None outside the project."""
    parts = module.split(".")
    if parts[0] in ("models", "kernels"):
        return parts[0]
    if parts[0] == "farm" and len(parts) > 1 and parts[1] in ALLOWED:
        return parts[1]
    return None


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """Every module ``path`` imports, with line numbers (relative imports resolved)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            # ``from farm import io`` names a sub-package.
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if layer_of(base) is None]
    return found


def source_files() -> list[Path]:
    files = [
        *ROOT.joinpath("farm").rglob("*.py"),
        *ROOT.joinpath("models").rglob("*.py"),
        *ROOT.joinpath("kernels").rglob("*.py"),
    ]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def test_every_module_belongs_to_a_layer():
    strays = [
        str(p.relative_to(ROOT))
        for p in source_files()
        if layer_of(module_name(p)) is None and module_name(p) != "farm"
    ]
    assert not strays, f"modules outside every layer (move them into farm/<layer>/): {strays}"


def test_imports_point_down_the_layers():
    wrong = []
    for path in source_files():
        name = module_name(path)
        layer = layer_of(name)
        if layer is None:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for line, target in imported_modules(path, package):
            target_layer = layer_of(target)
            if target_layer is not None and target_layer not in ALLOWED[layer]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({layer}) imports {target} ({target_layer})")
    assert not wrong, "imports against the layer direction:\n" + "\n".join(wrong)


def test_the_layer_walker_sees_a_wrong_edge(tmp_path):
    """The check itself: a domain module importing the render layer is caught, even lazily."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from farm.render.stitch import Stitcher\n")
    targets = [layer_of(t) for _, t in imported_modules(bad, "farm.domain")]
    assert "render" in targets and "render" not in ALLOWED["domain"]


@pytest.mark.parametrize(
    "modules",
    [
        ("farm.gateway.server", "farm.gateway.grpc_service", "farm.gateway.http_app"),
        ("farm.scheduler.manager", "farm.scheduler.core", "farm.scheduler.queue", "farm.scheduler.actor"),
        ("farm.domain.validation", "farm.domain.planner", "farm.workers.cancel"),
    ],
)
def test_gateway_and_scheduler_load_no_torch(modules):
    """The gateway and the control plane start fast and small: importing them loads no torch."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n    importlib.import_module(name)\n"
        "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'av') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"importing {modules} loaded {done.stdout.strip()}"


def test_scheduler_and_render_functions_stay_short():
    """A function of the scheduler or the render layer reads at a glance: at most 60 lines."""
    long = []
    for path in source_files():
        if layer_of(module_name(path)) not in ("scheduler", "render"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "functions over 60 lines:\n" + "\n".join(long)
