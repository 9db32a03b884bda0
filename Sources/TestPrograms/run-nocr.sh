#!/usr/bin/env bash
# Runs workloads by hand, without checkpoint: start, wait, SIGTERM, check PASS.
# usage: run-nocr.sh BINDIR NAME...   (for debugging a workload outside zdtm)
set -u
bindir=$1; shift
pass=0; failn=0
for name in "$@"; do
    d=$(mktemp -d /tmp/nocr-$name.XXXX)
    (cd "$d" && "$bindir/$name" --pidfile="$d/pid" --outfile="$d/out")
    rc=$?
    if [ $rc -ne 0 ] || [ ! -s "$d/pid" ]; then echo "$name: FAIL (start rc=$rc: $(cat "$d/out" 2>/dev/null))"; failn=$((failn+1)); continue; fi
    pid=$(cat "$d/pid")
    sleep 1
    kill -TERM "$pid"
    for _ in $(seq 100); do [ -d /proc/$pid ] && [ "$(awk '{print $3}' /proc/$pid/stat 2>/dev/null)" != Z ] || break; sleep 0.1; done
    res=$(cat "$d/out" 2>/dev/null)
    if [ "$res" = PASS ]; then echo "$name: PASS"; pass=$((pass+1)); rm -rf "$d"; else echo "$name: FAIL ($res) see $d"; failn=$((failn+1)); fi
done
echo "$pass passed, $failn failed"
[ $failn -eq 0 ]
