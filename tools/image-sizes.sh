#!/usr/bin/env bash
# The sizes of the images `make docker` built, as a Markdown table (CI adds it to the job summary):
#   tools/image-sizes.sh IMAGE        # IMAGE:serve, IMAGE:serve-sklearn and IMAGE:pipeline; ENGINE=podman to ask podman
set -euo pipefail

image=${1:?usage: tools/image-sizes.sh IMAGE}
engine=${ENGINE:-docker}
echo "| image | size |"
echo "|---|---|"
for target in serve serve-sklearn pipeline; do
  bytes=$("$engine" image inspect --format '{{.Size}}' "$image:$target")
  echo "| \`$image:$target\` | $((bytes / 1000000)) MB |"
done
