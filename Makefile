# inference-autoscaler: the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install system-deps test demo bench lint fuzz clean

# Re-install only when the package metadata changes; quick when already done.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip >/dev/null
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# System packages the tests need (Prometheus, for the real-server tests). Debian/Ubuntu: installed
# with apt when missing; elsewhere install a Prometheus >= 2.40 (prometheus and promtool on PATH).
system-deps:
	@bash scripts/system-deps.sh

test: install system-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

demo: install
	@bash scripts/demo.sh

bench: install
	$(BIN)/python benchmarks/run.py

# ruff, mypy (strict) and the package layers (import-linter: [tool.importlinter] in pyproject.toml).
# No `ruff format --check` yet: the code base is not ruff-formatted.
lint: install
	$(BIN)/ruff check autoscaler tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# The policy loader against >= 5,000 generated hostile and mutated files, each under RLIMIT_AS 1 GiB and a
# 10 s alarm; prints crashes, hangs, over-1-GiB and invalid-accepted counts (all must be 0).
fuzz: install
	$(BIN)/python scripts/fuzz_policies.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
