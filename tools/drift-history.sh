#!/usr/bin/env bash
# In CI every run starts from a fresh checkout: the drift history lives on as the artifact
# "drift-history" of earlier drift.yml runs (reports/history/drift.jsonl and the page it draws).
#   tools/drift-history.sh download BRANCH
# restores the newest such artifact from a completed run on BRANCH into reports/, so this run
# appends to it. None to be found (first run, artifacts expired, API trouble) is a warning, and a
# new history starts: monitoring itself must never wait on its history.
set -euo pipefail

usage() { echo "usage: $0 download BRANCH" >&2; exit 2; }
[[ $# -eq 2 && $1 == download ]] || usage
branch=$2
tried=0
runs=$(gh run list --workflow drift.yml --branch "$branch" --status completed --limit 20 \
  --json databaseId --jq '.[].databaseId') || runs=""
fetched=$(mktemp -d)
trap 'rm -rf "$fetched"' EXIT
for run in $runs; do
  tried=$((tried + 1))
  if gh run download "$run" --name drift-history --dir "$fetched/$run" 2>/dev/null \
    && [[ -s $fetched/$run/history/drift.jsonl ]]; then
    mkdir -p reports/history
    cp "$fetched/$run/history/drift.jsonl" reports/history/drift.jsonl
    echo "drift history: $(wc -l < reports/history/drift.jsonl) earlier run(s), from run $run"
    exit 0
  fi
done
echo "::warning::drift history: none found in $tried completed drift.yml run(s) on $branch;" \
  "this run starts a new one"
