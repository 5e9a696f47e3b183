#!/usr/bin/env bash
# CI: when data/raw lives in a DVC remote (data/raw.dvc), pull it and split it (`make data`) with
# the remote's credentials; later steps find it on disk and need none. Credentials, either:
#   secrets DVC_AWS_ACCESS_KEY_ID + DVC_AWS_SECRET_ACCESS_KEY (the step maps them to AWS_*), or
#   an OIDC role: variable DVC_AWS_ROLE_ARN (mapped to AWS_ROLE_ARN) and the job's
#   `id-token: write`; the job's OIDC token is written to a file that boto (DVC's S3 client)
#   exchanges for the role's temporary credentials (AssumeRoleWithWebIdentity).
# Unset secrets arrive as empty strings: they are unset here, so the AWS SDK looks elsewhere.
set -euo pipefail

if [[ ! -f data/raw.dvc ]]; then
  echo "data/raw is in git (no data/raw.dvc): nothing to pull"
  exit 0
fi
for name in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ROLE_ARN \
  AWS_ENDPOINT_URL AWS_DEFAULT_REGION; do
  [[ -n ${!name:-} ]] || unset "$name"
done
if [[ -n ${AWS_ROLE_ARN:-} ]]; then
  if [[ -z ${ACTIONS_ID_TOKEN_REQUEST_URL:-} ]]; then
    echo "DVC_AWS_ROLE_ARN is set but the job has no OIDC token: give it \`id-token: write\`" >&2
    exit 2
  fi
  token="${RUNNER_TEMP:-/tmp}/dvc-oidc-token"
  curl -fsS -H "Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
    "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=${AWS_OIDC_AUDIENCE:-sts.amazonaws.com}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["value"])' >"$token"
  export AWS_WEB_IDENTITY_TOKEN_FILE="$token" AWS_ROLE_SESSION_NAME="github-${GITHUB_RUN_ID:-run}"
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
fi
make data
