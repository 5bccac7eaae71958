# hydraflow: every target sets up what it needs, so each works on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
RUST_SOURCES := $(wildcard rust/*.rs rust/*/*.rs) Cargo.toml
STAMP := $(VENV)/.built
COMMA := ,

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

# Set-up output goes to a log; a newcomer sees one line per step, and the
# log only when a step fails.
SETUP_LOG := $(VENV)/setup.log
define LOGGED
	@echo "$(1)"
	@$(2) >>$(SETUP_LOG) 2>&1 || { tail -n 40 $(SETUP_LOG); echo "failed: see $(SETUP_LOG)"; exit 1; }
endef

$(BIN)/maturin:
	@python3 -m venv $(VENV)
	$(call LOGGED,hydraflow: creating $(VENV) with pip and maturin,$(BIN)/pip install -q -q --upgrade pip "maturin>=1.9.4$(COMMA)<2")

# `maturin develop` installs the package editable, without the files a wheel
# puts at the root of site-packages: the submit hand-off's start-up hook
# (python/hydraflow_handoff.pth) is copied there, as a wheel installs it.
INSTALL_HOOK = cp python/hydraflow_handoff.pth "$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/"

$(STAMP): $(BIN)/maturin $(RUST_SOURCES) pyproject.toml python/hydraflow_handoff.pth
	$(call LOGGED,hydraflow: building the Rust core (release) and installing with dev tools,$(BIN)/maturin develop --release --extras dev$(COMMA)cluster --quiet)
	@$(INSTALL_HOOK)
	@touch $(STAMP)
	@echo "hydraflow: installed $$($(PY) -c 'import hydraflow; print(hydraflow.__version__)') in $(VENV) (log: $(SETUP_LOG))"

.PHONY: install
install: $(STAMP) ## Create .venv and install hydraflow (release build) with its dev tools

.PHONY: build-dev
build-dev: $(BIN)/maturin ## Rebuild the extension quickly (debug build)
	$(call LOGGED,hydraflow: building the Rust core (debug),$(BIN)/maturin develop --extras dev$(COMMA)cluster --quiet)
	@$(INSTALL_HOOK)

.PHONY: format
format: install ## Format Rust and Python code
	cargo fmt
	$(BIN)/ruff format python tests benches examples
	$(BIN)/ruff check --fix python tests benches examples

.PHONY: lint
lint: install ## cargo fmt/clippy, ruff, mypy and stubtest
	cargo fmt --check
	cargo clippy --all-targets --features python -- -D warnings
	$(BIN)/ruff format --check python tests benches examples
	$(BIN)/ruff check python tests benches examples
	$(BIN)/mypy python
	$(PY) -m mypy.stubtest hydraflow._core

.PHONY: services
services: ## Install SLURM, munge and PostgreSQL (Debian packages) when missing
	bash .ci/services.sh

# pytest runs on every core (pytest-xdist), a test file's tests on one
# worker, so that its module fixtures are set up once. The session's
# tutorial store is built once for all workers (tests/conftest.py); a
# worker that reaches the SLURM or server tests starts its own services.
PYTEST := $(BIN)/pytest -n auto --dist loadfile

.PHONY: check
check: install ## The fast tier, for every change: cargo test and the pytest tests not marked slow
	cargo test --quiet
	$(PYTEST) -m "not slow" --durations=10

.PHONY: test
test: install services lint ## Set up, then everything CI runs: lint, cargo test and every pytest test
	cargo test --quiet
	$(PYTEST) --durations=20

.PHONY: bench
bench: install services ## Benchmarks (every benches/bench_*.py), each figure beside its floor and target
	@status=0; for bench in benches/bench_*.py; do echo "== $$bench"; $(PY) $$bench || status=1; done; exit $$status

# Prints each experiment of examples/mlflow.db with its runs by status.
define SHOW_RUNS
import hydraflow
runs = hydraflow.load(status=None)
for (name,), group in runs.frame.group_by("experiment", maintain_order=True):
    statuses = dict(group.group_by("status").len().sort("status").iter_rows())
    print(f"{name}: {len(group)} runs {statuses}")
print(f"{len(runs)} runs in all")
endef
export SHOW_RUNS

.PHONY: tutorial
tutorial: install ## Set up, then run the tutorial in examples/
	cd examples && rm -rf mlruns mlflow.db mlflow.db-wal mlflow.db-shm multirun outputs .hydraflow && export PATH="$(CURDIR)/$(BIN):$$PATH" && \
	  hydraflow run job_sequential && hydraflow run job_parallel && hydraflow run job_submit && \
	  python -c "$$SHOW_RUNS"

.PHONY: clean
clean: ## Remove build outputs and the virtual environment
	cargo clean
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .mypy_cache
