#!/usr/bin/env bash
# The test command: unit tests, then the smoke suite of real checkpoint/restore cycles (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/deps.sh
swift build
exec swift test
