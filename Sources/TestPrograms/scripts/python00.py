#!/usr/bin/env python3
"""A real interpreter across checkpoint/restore: a counting loop and a large object graph.

Speaks the zdtm protocol (--pidfile, --outfile; daemonize; PASS/FAIL on SIGTERM). The loop
keeps counting in memory; after SIGTERM the count must have kept growing, with no gap larger
than the C/R downtime, and the object graph must be intact (checksum)."""
import hashlib
import os
import signal
import sys
import time

args = dict(a.split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
pidfile, outfile = args["--pidfile"], args["--outfile"]

r, w = os.pipe()
child = os.fork()
if child > 0:
    # EOF means ready once the pidfile exists (the child closes its end
    # first, so the launcher never sees this pipe), or failure once it died.
    os.close(w)
    while os.read(r, 1):
        pass
    while True:
        if os.path.exists(pidfile):
            sys.exit(0)
        if os.waitpid(child, os.WNOHANG)[0] == child:
            sys.exit(1)
        time.sleep(0.001)
os.close(r)
os.setsid()
null = os.open("/dev/null", os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
log = os.open(outfile + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
os.dup2(log, 1)
os.dup2(log, 2)
os.close(log)

stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)

# State to keep: a dict of lists of strings (many small heap objects) and its checksum.
graph = {i: [f"item-{i}-{j}" * 3 for j in range(50)] for i in range(2000)}


def digest():
    h = hashlib.sha256()
    for k in sorted(graph):
        h.update(repr((k, graph[k])).encode())
    return h.hexdigest()


before = digest()
with open(pidfile + ".tmp", "w") as f:
    f.write(f"{os.getpid()}\n")
os.close(w)
os.rename(pidfile + ".tmp", pidfile)

count = 0
samples = []
while not stop:
    count += 1
    samples.append(count)
    time.sleep(0.01)

failure = None
if samples != list(range(1, count + 1)):
    failure = "the counter skipped or repeated values"
elif count < 1:
    failure = "the loop never ran"
elif digest() != before:
    failure = "the object graph changed"
with open(outfile, "w") as f:
    f.write("PASS\n" if failure is None else f"FAIL: {failure}\n")
sys.exit(0 if failure is None else 1)
