#!/usr/bin/env bash
# Runs workloads by hand, without checkpoint: start, wait, SIGTERM, check PASS.
# usage: run-nocr.sh BINDIR NAME...   (for debugging a workload outside zdtm)
# Scratch dirs of passing workloads are removed; failing ones are kept and named.
set -u
[ $# -ge 1 ] || { echo "usage: $0 BINDIR NAME..." >&2; exit 2; }
bindir=$(cd "$1" && pwd); shift
pass=0; failn=0
alive() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
for name in "$@"; do
    d=$(mktemp -d "/tmp/nocr-$name.XXXX")
    # The started process returns once the daemon is set up (its parent exits).
    (cd "$d" && exec "$bindir/$name" --pidfile="$d/pid" --outfile="$d/out")
    rc=$?
    if [ $rc -ne 0 ] || [ ! -s "$d/pid" ]; then
        echo "$name: FAIL (start rc=$rc: $(cat "$d/out" 2>/dev/null)) see $d"; failn=$((failn+1)); continue
    fi
    pid=$(cat "$d/pid")
    sleep 1
    kill -TERM "$pid"
    for _ in $(seq 300); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
        kill -KILL "$pid"
        echo "$name: FAIL (still running 30 s after SIGTERM, killed) see $d"; failn=$((failn+1)); continue
    fi
    res=$(cat "$d/out" 2>/dev/null)
    if [ "$res" = PASS ]; then echo "$name: PASS"; pass=$((pass+1)); rm -rf "$d"
    else echo "$name: FAIL (${res:-no outfile}) see $d"; failn=$((failn+1)); fi
done
echo "$pass passed, $failn failed"
[ $failn -eq 0 ]
