#!/usr/bin/env bash
# The main job: install what is missing, build in release mode, run the default zdtm suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source ci/deps.sh
swift build -c release
exec .build/release/zdtm run --suite default --iters 3 -p 2 --keep-going --report zdtm-report "$@"
