#!/usr/bin/env bash
# docker-compose.yml for real where there is no Docker engine: podman-compose on podman, as root,
# on tools/container-proof.sh's stand-in base image (same work folder and storage; it makes the
# base the first time, and KEEP_BASE=1, the default here, reuses it and the layer cache).
#
#   sudo tools/compose-proof.sh
#
# Checks (PASS/FAIL lines in $W/compose-logs/summary.txt; exit 0 only if all pass):
#  - the compose file's three images build from the Dockerfile (mlflow, serve, pipeline-mlflow);
#  - `up -d mlflow`: the MLflow server becomes healthy;
#  - `--profile pipeline run --rm pipeline`: make all, logging to http://mlflow:5000, exit 0;
#  - MLflow's REST API (/api/2.0/mlflow/...) on the host has the candidate's run with the gate's
#    decision, registered model version 1 under alias champion, and the drift check's run;
#  - `up -d serve`: /ready answers 200 with the promoted version (models mounted read-only);
#  - `down -v` removes the containers and the MLflow volume.
set -euo pipefail

REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
W=${CONTAINER_PROOF_WORK:-${TMPDIR:-/tmp}/mlops-container-proof}
NICE=${NICE:-10}
BASE_IMAGE=localhost/python:3.11-bookworm-standin
C=$W/compose
LOGS=$W/compose-logs
PROJECT=mlopsproof$$
n() { nice -n "$NICE" "$@"; }
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0))s] $*" | tee -a "$LOGS/summary.txt"; }
[[ $(id -u) == 0 ]] || { echo "run as root (podman needs it here)" >&2; exit 2; }
rm -rf "$LOGS" "$C"
mkdir -p "$LOGS" "$C"
: >"$LOGS/summary.txt"

# ---- podman, its configuration and the stand-in base: container-proof.sh's ----------------------
KEEP_BASE=${KEEP_BASE:-1} BASE_ONLY=1 CONTAINER_PROOF_WORK=$W "$REPO/tools/container-proof.sh" "$REPO" \
  >"$LOGS/base.log" 2>&1 || { stamp "FAIL: stand-in base (see $LOGS/base.log)"; exit 1; }
export CONTAINERS_STORAGE_CONF=$W/conf/storage.conf CONTAINERS_CONF=$W/conf/containers.conf
stamp "$(tail -1 "$LOGS/base.log" | cut -d' ' -f2-)"
if [[ ! -x $W/podman-compose/bin/podman-compose ]]; then
  "$REPO/.venv/bin/python" -m venv "$W/podman-compose"
  "$W/podman-compose/bin/pip" install --quiet --disable-pip-version-check podman-compose \
    >"$LOGS/pip.log" 2>&1
fi
compose() { n "$W/podman-compose/bin/podman-compose" -p "$PROJECT" -f "$C/repo/docker-compose.yml" "$@"; }
stamp "$(compose version 2>/dev/null | tail -1)"

# ---- the repository at HEAD, FROM lines on the stand-in base ------------------------------------
git clone -q "$REPO" "$C/repo"
if [[ -n $(git -C "$REPO" status --porcelain --untracked-files=no) ]]; then
  stamp "NOTE: $REPO has uncommitted changes; the proof builds its HEAD only"
fi
stamp "cloned $REPO at $(git -C "$C/repo" rev-parse --short HEAD)"
sed -i -E "s#^FROM python:3\.11\.[0-9]+-slim-bookworm(@sha256:[0-9a-f]+)?#FROM $BASE_IMAGE#" \
  "$C/repo/Dockerfile"
ca_mount=()
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  ca_mount=(-v /etc/ssl/certs:/etc/ssl/certs:ro)
fi
fails=0
check() { if "$@"; then stamp "PASS: $desc"; else stamp "FAIL: $desc"; fails=$((fails + 1)); fi; }
# The compose file's images, built as `make docker ENGINE=podman` builds (docker format keeps the
# HEALTHCHECK); `up` and `run` then use them as they are.
for target in mlflow serve pipeline-mlflow; do
  b0=$(date +%s)
  if ! n podman build --format docker --isolation chroot --network host --layers --pull=never \
    "${ca_mount[@]}" --target "$target" -t "localhost/mlops:$target" "$C/repo" \
    >"$LOGS/build-$target.log" 2>&1; then
    stamp "FAIL: build $target (tail of $LOGS/build-$target.log):"
    tail -20 "$LOGS/build-$target.log" | tee -a "$LOGS/summary.txt"
    exit 1
  fi
  stamp "built localhost/mlops:$target in $(($(date +%s) - b0))s"
done

# ---- the stack ----------------------------------------------------------------------------------
free_port() { "$REPO/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export MLFLOW_PORT=$(free_port) SERVE_PORT=$(free_port)
MLFLOW=http://127.0.0.1:$MLFLOW_PORT
cleanup() { compose --profile pipeline down -v >"$LOGS/down.log" 2>&1 || true; }
trap cleanup EXIT
mkdir -p "$C/repo/models" "$C/repo/reports"
chown -R 10001 "$C/repo/models" "$C/repo/reports"   # what the compose file says to do
compose up -d mlflow >"$LOGS/up-mlflow.log" 2>&1
for _ in $(seq 1 240); do curl -fsS "$MLFLOW/health" >/dev/null 2>&1 && break; sleep 1; done
desc="mlflow service answers /health on 127.0.0.1:$MLFLOW_PORT"
check curl -fsS -o /dev/null "$MLFLOW/health"
desc="pipeline service (profile pipeline): make all logged to http://mlflow:5000, exit 0"
check bash -c "cd '$C/repo' && nice -n $NICE '$W/podman-compose/bin/podman-compose' -p $PROJECT --profile pipeline run --rm pipeline >'$LOGS/pipeline.log' 2>&1 && grep -q 'MLflow: candidate .* logged to http://mlflow:5000' '$LOGS/pipeline.log' && ! grep -q Traceback '$LOGS/pipeline.log'"
grep -E '^\[|==>' "$LOGS/pipeline.log" | tail -12 >>"$LOGS/summary.txt" || true
api() { curl -fsS "$MLFLOW/api/2.0/mlflow/$1"; }
runs_of() {  # runs_of EXPERIMENT: its runs as JSON, through the REST API
  local id
  id=$(api "experiments/get-by-name?experiment_name=$1" | "$REPO/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["experiment"]["experiment_id"])')
  curl -fsS -X POST -H 'Content-Type: application/json' -d "{\"experiment_ids\": [\"$id\"]}" \
    "$MLFLOW/api/2.0/mlflow/runs/search"
}
desc="REST: the candidate's run with params, metrics and the gate's decision (promoted)"
check bash -c "$(declare -f api runs_of); MLFLOW=$MLFLOW REPO=$REPO; runs_of mlops | tee '$LOGS/runs.json' | '$REPO/.venv/bin/python' -c '
import json, sys
(run,) = json.load(sys.stdin)[\"runs\"]
tags = {t[\"key\"]: t[\"value\"] for t in run[\"data\"][\"tags\"]}
params = {p[\"key\"]: p[\"value\"] for p in run[\"data\"][\"params\"]}
metrics = {m[\"key\"]: m[\"value\"] for m in run[\"data\"][\"metrics\"]}
assert tags[\"gate.decision\"] == \"promoted\" and params[\"estimator\"] and metrics[\"accuracy\"] > 0.78
'"
desc="REST: registered model mlops, alias champion on version 1"
check bash -c "curl -fsS '$MLFLOW/api/2.0/mlflow/registered-models/alias?name=mlops&alias=champion' | tee '$LOGS/champion.json' | grep -q '\"version\": *\"1\"'"
desc="REST: the drift check's run in mlops-monitoring"
check bash -c "$(declare -f api runs_of); MLFLOW=$MLFLOW REPO=$REPO; runs_of mlops-monitoring | grep -q 'drift.status'"
compose up -d serve >"$LOGS/up-serve.log" 2>&1
for _ in $(seq 1 120); do curl -fsS "http://127.0.0.1:$SERVE_PORT/ready" >/dev/null 2>&1 && break; sleep 1; done
desc="serve service: /ready 200 with the promoted version v1 (models read-only)"
check bash -c "curl -fsS http://127.0.0.1:$SERVE_PORT/ready | tee '$LOGS/ready.json' | grep -q '\"model_version\":\"v1\"'"
stamp "  /ready: $(cat "$LOGS/ready.json" 2>/dev/null)"
compose --profile pipeline down -v >"$LOGS/down.log" 2>&1
trap - EXIT
desc="down -v: no container or volume of the project left"
check bash -c "[[ -z \$(podman ps -aq --filter label=io.podman.compose.project=$PROJECT) && -z \$(podman volume ls -q | grep '^${PROJECT}_') ]]"

stamp "done in $(($(date +%s) - t0))s: $fails check(s) failed; logs in $LOGS"
[[ $fails == 0 ]]
