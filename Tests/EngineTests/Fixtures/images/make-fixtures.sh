#!/usr/bin/env bash
# Rebuilds criu/ from criu-json/ with CRIU's own encoder (crit, Debian package criu), so the
# image tests read bytes that CRIU's tooling wrote, not cryo. pages-3.img is 3 pages of 'Z'.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/criu"
for j in "$here"/criu-json/*.json; do
    crit encode -i "$j" -o "$here/criu/$(basename "${j%.json}")"
done
head -c 12288 /dev/zero | tr '\0' 'Z' > "$here/criu/pages-3.img"
