# Headrace — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export HEADRACE_CACHE ?= $(HOME)/.cache/headrace

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS=":.*## "}; {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $@

# The compiled commitlog decoder (Rust, PyO3). Without cargo the runtime uses the pure-Python decoder.
$(VENV)/.native: $(VENV)/.installed native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	@if command -v cargo >/dev/null; then \
		CARGO_BUILD_JOBS=1 $(PY) -m pip install -q ./native && touch $@; \
	else \
		echo "cargo not found: skipping the native decoder (the runtime falls back to pure Python, ~8x slower)"; \
	fi

.PHONY: dev
dev: $(VENV)/.installed $(VENV)/.native ## Create the virtualenv, install Headrace, its dev tools and the native decoder

.PHONY: lint
lint: dev ## ruff, mypy (strict), import-linter contracts, CRD drift check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@if command -v cargo >/dev/null; then \
		cargo fmt --check --manifest-path native/Cargo.toml && \
		cargo clippy --release -q -j 1 --manifest-path native/Cargo.toml -- -D warnings; \
	fi
	$(PY) -m cdc_operator.crd --check crds/ charts/headrace/crds/
	$(PY) -m cdc_operator.reference --check docs/operator.md

.PHONY: fmt
fmt: dev ## Format and autofix
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: prereqs
prereqs: ## Check the tools the project cannot install by itself (Java, Maven, PostgreSQL, Go, Rust, Node.js, openssl)
	@bash scripts/check-prereqs.sh test

.PHONY: deps
deps: dev ## Fetch/build the heavy test dependencies into $(HEADRACE_CACHE) (Cassandra jars, envtest binaries, PGlite+TimescaleDB)
	bash scripts/fetch-cassandra.sh
	@if [ -f scripts/build-envtest.sh ]; then bash scripts/build-envtest.sh; fi
	$(PY) -m devservices timescaledb-install

.PHONY: test
test: prereqs deps ## Fetch/build what the tests need (cached), then run the whole suite against real servers, with coverage
	@if command -v cargo >/dev/null; then \
		PYO3_PYTHON=$(CURDIR)/$(PY) cargo test --release -q -j 1 --manifest-path native/Cargo.toml; \
	fi
	$(VENV)/bin/pytest --cov --cov-report=term $(PYTEST_ARGS)
	@set -o pipefail; echo "line coverage, runtime:" && $(VENV)/bin/coverage report --include='pipeline_runtime/*' --fail-under=85 --format=total
	@set -o pipefail; echo "line coverage, operator:" && $(VENV)/bin/coverage report --include='operator/*' --fail-under=85 --format=total

.PHONY: stress
stress: prereqs deps ## Hunt rare failures: replicaDedup through many node restarts (HEADRACE_STRESS_CYCLES, 10)
	$(VENV)/bin/pytest -m stress -s tests/integration/replicas/test_dedup_restarts.py $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: dev ## Only the tests that need no server
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

.PHONY: node-deps
node-deps: dev ## Build what a real node needs (cached): Debian packages, kubelet, kube-proxy, images (no registry)
	bash scripts/node-packages.sh
	bash scripts/build-envtest.sh all node
	bash scripts/build-images.sh all

.PHONY: e2e
e2e: node-deps ## End to end on a real cluster: a real node on this machine (kind where Docker runs)
	$(VENV)/bin/pytest e2e $(PYTEST_ARGS)

.PHONY: node-up
node-up: node-deps ## Start a real single-node cluster here (containerd, kubelet, CoreDNS); prints a kubeconfig
	$(PY) -m devservices node-up

.PHONY: node-down
node-down: dev ## Stop the node node-up started, its pods and network
	$(PY) -m devservices node-down

.PHONY: services-up
services-up: dev ## Start Cassandra (CDC on), PostgreSQL and print their addresses; state in .services/
	$(PY) -m devservices up

.PHONY: services-down
services-down: dev ## Stop what services-up started
	$(PY) -m devservices down

.PHONY: envtest-up
envtest-up: dev ## Start kube-apiserver + etcd (envtest style); prints a kubeconfig path
	$(PY) -m devservices envtest-up

.PHONY: envtest-down
envtest-down: dev ## Stop the envtest control plane
	$(PY) -m devservices envtest-down

.PHONY: demo
demo: ## Run a pipeline locally: Cassandra -> PostgreSQL + ClickHouse (chdb), with a workload
	@bash scripts/check-prereqs.sh demo
	@$(MAKE) --no-print-directory dev
	bash scripts/fetch-cassandra.sh
	$(PY) -m examples.demo $(DEMO_ARGS)

.PHONY: bench
bench: dev ## Run the benchmarks, print a table, write JSON to bench/results/
	$(PY) -m bench $(BENCH)

.PHONY: crds
crds: dev ## Regenerate crds/ (and the chart's copy) from the typed model
	$(PY) -m cdc_operator.crd --write crds/ charts/headrace/crds/

.PHONY: docs
docs: dev ## Regenerate the configuration reference in docs/operator.md from the typed model
	$(PY) -m cdc_operator.reference --write docs/operator.md

.PHONY: clean
clean: ## Remove build artefacts, caches and local service state (keeps $(HEADRACE_CACHE))
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov build dist *.egg-info .services native/target
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
