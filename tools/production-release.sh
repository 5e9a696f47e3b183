#!/usr/bin/env bash
# Between CI runs the production model lives in GitHub Releases: the release marked "latest" is
# production (pipeline.yml publishes one per promotion). This fetches its assets with the gh CLI:
#   tools/production-release.sh download DIR
# DIR ends up holding the latest release's assets, or empty when the repository has no release
# yet. An API failure is an error, never "no release": the gate must not run against nothing.
set -euo pipefail

usage() { echo "usage: $0 download DIR" >&2; exit 2; }
[[ $# -eq 2 && $1 == download ]] || usage
dir=$2
mkdir -p "$dir"
tag=$(gh release list --exclude-drafts --exclude-pre-releases --limit 100 \
  --json tagName,isLatest --jq '.[] | select(.isLatest) | .tagName')
if [[ -z $tag ]]; then
  echo "production: no release yet, so no production model (the gate compares against none)"
  exit 0
fi
gh release download "$tag" --dir "$dir" --clobber
echo "production: release $tag downloaded to $dir:"
ls -l "$dir"
