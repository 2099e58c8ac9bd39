# Two commands do everything on a fresh machine, set-up included:
#   make render   render examples/text-to-video-480p.json end to end into out/
#   make test     lint (ruff), format check, type check (mypy), then the test suite
# Both create .venv on first use. torch is pinned first (TORCH_SPEC): on a CPU-only machine
# with the local wheel cache that is the CPU build; on a GPU machine PyPI's CUDA build.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TASK ?= examples/text-to-video-480p.json
OUT ?= out
# Video workers for `make render` (empty: farm render's default for its executor).
WORKERS ?=
# pytest-xdist workers for `make test`, a test file to each at a time (0: one process).
TEST_WORKERS ?= 2

STAMP := $(VENV)/.installed

.PHONY: render test venv benchmarks clean proto

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

render: $(STAMP)
	$(VENV)/bin/farm render $(TASK) --out $(OUT) $(if $(WORKERS),--workers $(WORKERS))

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# Regenerate farm/v1/*_pb2*.py from proto/farm/v1/*.proto (a test checks they are current).
proto: $(STAMP)
	$(VENV)/bin/python -m farm.gateway.proto_gen

clean:
	rm -rf $(VENV) $(OUT) *.egg-info
