// A real Swift runtime across checkpoint/restore: generic collections, classes with reference
// counting, string hashing (with the per-process random seed) and a running counter. Speaks the
// zdtm protocol by itself, with Glibc only (no Foundation threads).
import Glibc

nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

final class Node {
    let id: Int
    var children: [Node] = []
    let label: String
    init(id: Int) { self.id = id; label = "node-\(id)-" + String(repeating: "x", count: id % 17) }
}

func option(_ name: String) -> String? {
    CommandLine.arguments.first { $0.hasPrefix("--\(name)=") }.map { String($0.dropFirst(name.count + 3)) }
}

func writeFile(_ path: String, _ text: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { return }
    _ = text.withCString { write(fd, $0, strlen($0)) }
    close(fd)
}

guard let pidfile = option("pidfile"), let outfile = option("outfile") else {
    fputs("usage: swift00 --pidfile=P --outfile=O\n", stderr)
    exit(2)
}

var fds: [Int32] = [0, 0]
pipe(&fds)
let child = fork()
if child > 0 {
    close(fds[1])
    // EOF means ready once the pidfile exists (the child closes its end
    // first, so the launcher never sees this pipe), or failure once it died.
    var c: UInt8 = 0
    while read(fds[0], &c, 1) > 0 {}
    while true {
        if access(pidfile, F_OK) == 0 { exit(0) }
        var st: Int32 = 0
        if waitpid(child, &st, WNOHANG) == child { exit(1) }
        usleep(1000)
    }
}
close(fds[0])
setsid()
let null = open("/dev/null", O_RDONLY)
dup2(null, 0)
close(null)
let log = open(outfile + ".log", O_WRONLY | O_CREAT | O_APPEND, 0o644)
dup2(log, 1)
dup2(log, 2)
close(log)
signal(SIGTERM) { _ in stopRequested = 1 }

// The state: a tree of objects, a dictionary keyed by strings, and its expected summary.
let root = Node(id: 0)
var all = [root]
for i in 1..<5000 {
    let n = Node(id: i)
    all[(i * 7919) % all.count].children.append(n)
    all.append(n)
}
var table: [String: Int] = [:]
for n in all { table[n.label + "#\(n.id)"] = n.id * n.id }
func summary() -> Int {
    var s = 0
    var stack = [root]
    while let n = stack.popLast() {
        s = s &* 31 &+ n.id &+ n.label.utf8.count
        stack.append(contentsOf: n.children)
    }
    for n in all { s = s &+ (table[n.label + "#\(n.id)"] ?? -1) }
    return s
}
let expected = summary()

writeFile(pidfile + ".tmp", "\(getpid())\n")
close(fds[1])
rename(pidfile + ".tmp", pidfile)

var count = 0
var last = 0
var ok = true
while stopRequested == 0 {
    count += 1
    if count != last + 1 { ok = false }
    last = count
    var ts = timespec(tv_sec: 0, tv_nsec: 10_000_000)
    nanosleep(&ts, nil)
}
var failure: String?
if !ok { failure = "the counter skipped" } else if count < 1 { failure = "the loop never ran" }
else if summary() != expected { failure = "the object graph or dictionary changed" }
writeFile(outfile, failure.map { "FAIL: \($0)\n" } ?? "PASS\n")
exit(failure == nil ? 0 : 1)
