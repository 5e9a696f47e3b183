#!/usr/bin/env bash
# Smoke test of both images `make docker IMAGE=...` built, run by CI's docker job (needs Docker):
#   tools/docker-smoke.sh IMAGE
# 1. IMAGE:pipeline runs `make all` as documented, models/ and reports/ bind-mounted from host
#    folders, as the host user (`--user "$(id -u)"`, not the image's uid 10001): the reports
#    stay on the host;
# 2. a mounted folder the image's user cannot write: exit 2 and one line naming it;
# 3. IMAGE:serve serves the model that run promoted (models/ mounted read-only): /health,
#    /ready, a POST /predict, and Docker's HEALTHCHECK reports "healthy".
# Container logs are printed on failure.
set -euo pipefail

image=${1:?usage: tools/docker-smoke.sh IMAGE}
port=${SMOKE_PORT:-8000}
name=mlops-smoke-$$
url=http://127.0.0.1:$port
work=$(mktemp -d)
# A row of the embedded dataset's schema (params.yaml); tests/test_docker.py validates it.
BODY='{"instances": [{"SCHL": 21, "MAR": 1, "RELP": 0, "DIS": 2, "ESP": 0, "CIT": 1, "MIG": 0, "MIL": 0, "ANC": 1, "NATIVITY": 1, "DEAR": 2, "DEYE": 2, "DREM": 2, "SEX": 1, "RAC1P": 1, "AGEP": 40}]}'

cleanup() {
  local code=$?
  if [[ $code -ne 0 ]] && docker container inspect "$name" >/dev/null 2>&1; then
    echo "---- container logs ----" >&2
    docker logs "$name" >&2 || true
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$code"
}
trap cleanup EXIT
fail() { echo "smoke test FAILED: $*" >&2; exit 1; }

mkdir -p "$work/models" "$work/reports"
echo "==> make all in $image:pipeline as uid $(id -u), models/ and reports/ bind-mounted"
docker run --rm --user "$(id -u)" -v "$work/models:/app/models" -v "$work/reports:/app/reports" \
  "$image:pipeline" make all
for file in models/registry.json reports/metrics.json reports/promotion.md reports/drift.html; do
  [[ -s $work/$file ]] || fail "$file was not written to the host folder"
done

echo "==> a mounted folder the image's user (10001) cannot write: one line, exit 2"
mkdir -m 755 "$work/not-writable"
code=0
docker run --rm -v "$work/not-writable:/app/models" "$image:pipeline" python -m mlops train \
  2>"$work/error.txt" || code=$?
cat "$work/error.txt"
[[ $code == 2 ]] || fail "exit $code, expected 2"
[[ $(wc -l <"$work/error.txt") == 1 ]] || fail "expected one line on stderr"
grep -q "/app/models is not writable" "$work/error.txt" || fail "the line does not name /app/models"

echo "==> serving the promoted model from $image:serve on $url"
docker run -d --name "$name" -p "127.0.0.1:$port:8000" -v "$work/models:/app/models:ro" \
  "$image:serve" >/dev/null

wait_for() {  # wait_for SECONDS COMMAND...: retry once a second
  local seconds=$1
  shift
  for ((i = 0; i < seconds; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "timed out after ${seconds}s: $*" >&2
  return 1
}
healthy() { [[ $(docker inspect -f '{{.State.Health.Status}}' "$name") == healthy ]]; }

wait_for 60 curl -fsS "$url/health"
wait_for 30 curl -fsS "$url/ready"
curl -fsS "$url/ready" && echo
curl -fsS -X POST "$url/predict" -H 'Content-Type: application/json' -d "$BODY" \
  | tee "$work/predict.json" && echo
grep -q '"probability"' "$work/predict.json" || fail "/predict gave no probability"
wait_for 90 healthy
echo "==> smoke test passed: make all with bind mounts as uid $(id -u); the one-line error;" \
  "/health, /ready, /predict and HEALTHCHECK of the serve image"
