# hydraflow: every target sets up what it needs, so each works on a fresh clone.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
RUST_SOURCES := $(wildcard rust/*.rs) Cargo.toml
STAMP := $(VENV)/.built

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/maturin:
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "maturin>=1.9.4,<2"

$(STAMP): $(BIN)/maturin $(RUST_SOURCES) pyproject.toml
	$(BIN)/maturin develop --release --extras dev,cluster --quiet
	@touch $(STAMP)

.PHONY: install
install: $(STAMP) ## Create .venv and install hydraflow (release build) with its dev tools

.PHONY: build-dev
build-dev: $(BIN)/maturin ## Rebuild the extension quickly (debug build)
	$(BIN)/maturin develop --extras dev,cluster --quiet

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

.PHONY: test
test: install services ## Set up, then run every test: cargo test and pytest
	cargo test --quiet
	$(BIN)/pytest

.PHONY: bench
bench: install services ## Benchmarks, each figure beside its floor and target
	$(PY) benches/bench_grammar.py
	$(PY) benches/bench_cluster.py

# Prints each experiment of examples/mlflow.db with its runs by status.
define SHOW_RUNS
import collections, mlflow
client = mlflow.MlflowClient("sqlite:///mlflow.db")
total = 0
for e in client.search_experiments(filter_string="name != 'Default'", order_by=["name"]):
    runs = client.search_runs([e.experiment_id], max_results=10000)
    total += len(runs)
    statuses = collections.Counter(r.info.status for r in runs)
    print(f"{e.name}: {len(runs)} runs {dict(statuses)}")
print(f"{total} runs in all")
endef
export SHOW_RUNS

.PHONY: tutorial
tutorial: install ## Set up, then run the tutorial in examples/
	cd examples && rm -rf mlruns mlflow.db multirun outputs && export PATH="$(CURDIR)/$(BIN):$$PATH" && \
	  hydraflow run job_sequential && hydraflow run job_parallel && hydraflow run job_submit && \
	  python -c "$$SHOW_RUNS"

.PHONY: all
all: lint test ## Lint and test

.PHONY: clean
clean: ## Remove build outputs and the virtual environment
	cargo clean
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .mypy_cache
