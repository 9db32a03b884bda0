#!/bin/bash
# Per-task restore phases of a 64-process tree (memtree00, 16 MiB each): dumps it, restores it
# with -v4, prints the median "memory" phase (build of the address space, before the fill).
# Run as root after `swift build -c release`. Usage: bench/tree-restore-phases.sh [PROCS] [MIB]
set -e
B=$(cd "$(dirname "$0")/.." && pwd)/.build/release
D=$(mktemp -d /dev/shm/tree-phases-XXXXXX)
trap 'kill -TERM $(cat $D/pid 2>/dev/null) 2>/dev/null; rm -rf $D' EXIT
cd $D
$B/memtree00 --pidfile=$D/pid --outfile=$D/out ${1:-64} ${2:-16}
P=$(cat pid)
$B/cryo dump -t $P -D img -v0
while kill -0 $P 2>/dev/null; do sleep 0.05; done
sleep 2  # the killed tree's zombies are reaped by pid 1, late on some machines
$B/cryo restore -D img -d -v4 -o restore.log
grep timing restore.log | sed 's/.*memory \([0-9.]*\)ms.*/\1/' | sort -n |
    awk '{a[NR]=$1} END {print "memory phase median", a[int((NR+1)/2)], "ms over", NR, "tasks"}'
