#!/usr/bin/env bash
# The test command: unit tests (parsers, image codecs, ptrace), then the smoke suite of real
# checkpoint/restore cycles through zdtm (as root; without root those tests skip and say why).
set -uo pipefail
cd "$(dirname "$0")/.."
source ci/deps.sh || exit 1
set +e  # deps.sh sets -e; from here exit codes are handled by hand
swift build || exit 1
log=$(mktemp /tmp/cryo-test.XXXXXX)
# The tests are XCTest; Swift Testing would only add a "0 tests" line at the end.
swift test --disable-swift-testing 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
summary=$(grep -E "^[[:space:]]*Executed [0-9]+ tests?, with .*failures?" "$log" | tail -1)
total=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
# Test cases, not assertions: one case can fail several of them.
failed=$(grep -cE "^Test Case .* failed \(" "$log")
skipped=$(grep -cE "Test Case .* skipped" "$log")
# CI keeps only the end of the output: say there which assertions failed and why.
if [ "$rc" -ne 0 ]; then
    echo "--- failed assertions (first 20, each cut at 1500 characters) ---"
    grep -E ": error: " "$log" | cut -c1-1500 | head -20
fi
rm -f "$log"
if [ -n "$summary" ]; then
    echo "tests: $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
fi
exit "$rc"
