#!/usr/bin/env bash
# Smoke test of the Docker image, run by CI's docker job (needs a Docker engine):
#   tools/docker-smoke.sh IMAGE
# 1. the pipeline runs inside the image: `make all`, models/ in a scratch volume;
# 2. the image's default command serves the model that run promoted: /health, then /ready and
#    /metadata answer, and Docker's HEALTHCHECK reports "healthy".
# Commands as in the Dockerfile's header. Container logs are printed on failure.
set -euo pipefail

image=${1:?usage: tools/docker-smoke.sh IMAGE}
port=${SMOKE_PORT:-8000}
name=mlops-smoke-$$
volume=mlops-smoke-models-$$
url=http://127.0.0.1:$port

cleanup() {
  local code=$?
  if [[ $code -ne 0 ]] && docker container inspect "$name" >/dev/null 2>&1; then
    echo "---- container logs ----" >&2
    docker logs "$name" >&2 || true
  fi
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker volume rm "$volume" >/dev/null 2>&1 || true
  exit "$code"
}
trap cleanup EXIT

echo "==> make all inside $image"
docker run --rm -v "$volume:/app/models" "$image" make all

echo "==> serving the promoted model on $url"
docker run -d --name "$name" -p "127.0.0.1:$port:8000" -v "$volume:/app/models:ro" "$image" >/dev/null

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
curl -fsS "$url/health" && echo
wait_for 30 curl -fsS "$url/ready"
curl -fsS "$url/ready" && echo
curl -fsS "$url/metadata" | head -c 400 && echo
wait_for 90 healthy
echo "==> smoke test passed: pipeline ran in the image; /health, /ready, /metadata and HEALTHCHECK ok"
