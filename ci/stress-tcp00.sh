#!/bin/bash
# tcp00 in plain, pre and snaps, N rounds of --iters 3, under two CPU burners: the load under
# which a restored connection used to stall. Run as root after `swift build`.
# Usage: ci/stress-tcp00.sh [ROUNDS]
BIN=$(cd "$(dirname "$0")/.." && pwd)/.build/debug
sha1sum /dev/zero & L1=$!
sha1sum /dev/zero & L2=$!
trap 'kill $L1 $L2' EXIT
bad=0
for i in $(seq ${1:-20}); do
    out=$($BIN/zdtm run -t tcp00 --mode plain --mode pre --mode snaps --iters 3 -p 3 --keep-going 2>&1)
    echo "$out" | grep '^total'
    echo "$out" | grep -qE ' (XFAIL|FAIL) ' && { bad=$((bad + 1)); echo "$out" | grep -E 'FAIL' | head -3; }
done
echo "rounds with a failure: $bad"
[ $bad -eq 0 ]
