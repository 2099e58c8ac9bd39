"""Regenerates the Python code of the gRPC API from ``proto/farm/v1/*.proto``.

    python -m farm.gateway.proto_gen            # writes farm/v1/farm_pb2.py, farm_pb2_grpc.py, farm_pb2.pyi
    python -m farm.gateway.proto_gen --out DIR  # writes under DIR instead (the freshness test uses this)

The generated files are committed (clients need no protoc); a test regenerates them into a
temporary directory and checks the committed ones are identical, so they cannot go stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = REPO_ROOT / "proto"
GENERATED = ("farm_pb2.py", "farm_pb2_grpc.py", "farm_pb2.pyi")


def proto_files() -> list[Path]:
    """Every ``.proto`` file of the API, in a stable order."""
    return sorted((PROTO_ROOT / "farm" / "v1").glob("*.proto"))


def generate(out_dir: str | Path = REPO_ROOT) -> list[Path]:
    """Run ``grpc_tools.protoc`` on the API into ``out_dir`` (the repository root by default).

    Returns the generated files. The package ``__init__.py`` is written too when missing, so the
    output is importable as ``farm.v1``. Raises ``RuntimeError`` with protoc's exit status on failure.
    """
    import grpc_tools
    from grpc_tools import protoc

    out = Path(out_dir)
    (out / "farm" / "v1").mkdir(parents=True, exist_ok=True)
    # grpc_tools ships the well-known types (google/protobuf/struct.proto) next to itself.
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    # Relative proto paths keep the generated code free of this machine's absolute paths.
    files = [str(p.relative_to(PROTO_ROOT)) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        *files,
    ]
    status = protoc.main(args)
    if status != 0:
        raise RuntimeError(f"protoc failed with status {status}: {' '.join(args)}")
    init = out / "farm" / "v1" / "__init__.py"
    if not init.exists():
        init.write_text(
            '"""Generated gRPC code of the farm API (``proto/farm/v1``); regenerate with '
            '``python -m farm.gateway.proto_gen``."""\n'
        )
    return [out / "farm" / "v1" / name for name in GENERATED]


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate, print the written files."""
    parser = argparse.ArgumentParser(prog="python -m farm.gateway.proto_gen", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO_ROOT), help="output root (default: the repository)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
