// cryo-bench: cryo's speed as ratios of this machine's own limits, measured in the same run.
// Scenario "single-1g" (issue 3): one process holding 1 GiB of written anonymous memory.
//   dump wall    vs  process_vm_readv of 1 GiB + writing a new 1 GiB file (goal <= 1.25x)
//   restore wall vs  reading the 1 GiB image + filling 1 GiB of fresh memory (goal <= 1.25x)
//   image size   vs  touched memory (goal <= 1.01x); the frozen time is reported too.
// Scenario "tree-64x16m" (issue 4), run with "single": 64 processes holding 16 MiB each, the
//   same 1 GiB spread across a tree; dump and restore times as ratios of the single process's
//   (goal <= 1.5x).
// Scenario "incremental" (issue 5): see Incremental.swift.
// Scenario "page-server" (issue 9): see PageServerBench.swift.
// Scenario "stream" (issue 10): see StreamBench.swift.
// usage: cryo-bench [--scenario single|incremental|page-server] [--mib N] [--tree-procs N] [--dir IMAGES_PARENT] [--json FILE]
import CKernel
import Engine
import Foundation
import Glibc
import ZDTMCore

func arg(_ name: String) -> String? {
    let a = CommandLine.arguments
    guard let i = a.firstIndex(of: name), i + 1 < a.count else { return nil }
    return a[i + 1]
}

let mib = Int(arg("--mib") ?? "1024") ?? 1024
let bytes = mib << 20
// tmpfs by default, as CRIU's reference numbers: a disk filesystem adds writeback throttling
// that makes rounds differ by 3x.
let parent = arg("--dir") ?? (access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp")
let treeProcs = Int(arg("--tree-procs") ?? "64") ?? 64
let scenario = arg("--scenario") ?? "single"
let jsonPath = arg("--json") ?? "bench-out/\(scenario)-\(mib)m.json"
let binDir = Locations.selfDir()
_ = ck_prctl(36, 1, 0, 0, 0)  // subreaper: the workload daemon re-parents to us
try CryoLog.bootstrap(verbosity: 1, file: nil)

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }
func timed(_ f: () throws -> Void) rethrows -> Double { let t = now(); try f(); return now() - t }
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
func die(_ s: String) -> Never { print("cryo-bench: \(s)"); exit(1) }

func startHog(_ dir: String, workload: String = "memhog00", args: [String] = ["\(mib)"]) throws -> Int32 {
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let starter = try Subprocess.spawn(binDir + "/" + workload, ["--pidfile=\(dir)/pid", "--outfile=\(dir)/out"] + args, cwd: dir, output: dir + "/start.log")
    guard try Subprocess.wait(starter, timeout: 120) != nil else { die("\(workload) did not start") }
    guard let p = Int32((try String(contentsOfFile: dir + "/pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) else { die("no pid") }
    return p
}

func finishHog(_ pid: Int32, _ dir: String) throws -> String {
    kill(pid, SIGTERM)
    _ = try Subprocess.wait(pid, timeout: 120)
    return ((try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? "no result").trimmingCharacters(in: .whitespacesAndNewlines)
}

if scenario == "incremental" {
    try runIncremental(mib: mib, parent: parent, jsonPath: jsonPath)
    exit(0)
}
if scenario == "remote" || scenario == "migrate" {
    try runRemoteBench(mib: mib, parent: parent, jsonPath: jsonPath)
    exit(0)
}
if scenario == "page-server" {
    try runPageServerBench(mib: mib, parent: parent, jsonPath: jsonPath)
    exit(0)
}
if scenario == "stream" {
    try runStreamBench(mib: mib, parent: parent, jsonPath: jsonPath)
    exit(0)
}
if scenario == "lazy" {
    try runLazy(mib: mib, parent: parent, jsonPath: jsonPath)
    exit(0)
}
guard scenario == "single" else { die("unknown scenario \(scenario) (single, incremental, page-server, lazy, stream)") }

// MARK: the machine's limits
var work = Array("\(parent)/cryo-bench-XXXXXX".utf8CString)
guard let wp = mkdtemp(&work) else { die("cannot create a folder in \(parent)") }
let root = String(cString: wp)
defer { try? FileManager.default.removeItem(atPath: root) }

let buf = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096)
memset(buf, 1, bytes)
let memcpyS = median((0..<3).map { _ in
    let dst = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 4096); memset(dst, 0, bytes)
    defer { dst.deallocate() }
    return timed { memcpy(dst, buf, bytes) }
})
let freshFillS = median((0..<3).map { _ in
    timed {
        let m = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        memcpy(m, buf, bytes)
        munmap(m, bytes)
    }
})
let fileWriteS = median((0..<3).map { i in
    let t = timed {
        let f = root + "/limit-\(i)"
        let fd = open(f, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var off = 0
        while off < bytes { off += write(fd, buf + off, min(32 << 20, bytes - off)) }
        close(fd)
    }
    // Only one file stays (for the read limit): 3 GiB of page cache would skew the next writes.
    defer { if i < 2 { unlink(root + "/limit-\(i)") } }
    return t
})
let fileReadS = median((0..<3).map { i in
    timed {
        let fd = open(root + "/limit-2", O_RDONLY)
        var off = 0
        while off < bytes { let n = read(fd, buf + off, min(32 << 20, bytes - off)); if n <= 0 { break }; off += n }
        close(fd)
    }
})
unlink(root + "/limit-2")

let hogDir = root + "/hog"
var pid = try startHog(hogDir)
let readvS = median((0..<3).map { _ in
    timed {
        var off = 0
        let maps = (try? ProcReader().maps(pid: pid)) ?? []
        for m in maps where m.size >= UInt64(bytes) && m.writable {
            while off < bytes {
                let n = (try? Sys.processVmRead(pid: pid, local: buf + off, remote: m.start + UInt64(off), len: min(32 << 20, bytes - off))) ?? 0
                if n <= 0 { break }
                off += n
            }
        }
    }
})

// MARK: cryo
/// Three dump/restore rounds of the tree rooted at `pid`; returns the medians and the image size.
func rounds(_ start: Int32, label: String) throws -> (dump: [Double], frozen: [Double], restore: [Double], image: UInt64, pid: Int32) {
    var pid = start
    var dumpS: [Double] = [], frozenS: [Double] = [], restoreS: [Double] = [], imageBytes: UInt64 = 0
    for round in 0..<3 {
        let images = root + "/img-\(label)-\(round)"
        var tree = [pid]
        var i = 0
        while i < tree.count { tree += (try? ProcReader().allChildren(pid: tree[i])) ?? []; i += 1 }
        var req = DumpRequest(pid: pid, imagesDir: images)
        req.leave = .killed
        var stats = Dumper.Stats()
        dumpS.append(try timed { stats = try Dumper(req).run() })
        frozenS.append(stats.frozenSeconds)
        imageBytes = stats.pagesBytes
        for p in tree { while kill(p, 0) == 0 { var st: Int32 = 0; _ = waitpid(p, &st, WNOHANG); usleep(1000) } }
        var rreq = RestoreRequest(imagesDir: images)
        rreq.detach = true
        var restored: Int32 = 0
        restoreS.append(try timed { restored = try Restorer(rreq).run().pid })
        pid = restored
        try? FileManager.default.removeItem(atPath: images)
    }
    return (dumpS, frozenS, restoreS, imageBytes, pid)
}

let single = try rounds(pid, label: "single")
let dumpS = single.dump, frozenS = single.frozen, restoreS = single.restore, imageBytes = single.image
let verdict = try finishHog(single.pid, hogDir)

let treeDir = root + "/tree"
let perProc = max(1, mib / treeProcs)
let treeRoot = try startHog(treeDir, workload: "memtree00", args: ["\(treeProcs)", "\(perProc)"])
let tree = try rounds(treeRoot, label: "tree")
let treeVerdict = try finishHog(tree.pid, treeDir)
let dumpLimit = readvS + fileWriteS
let restoreLimit = fileReadS + freshFillS
let dumpRatio = median(dumpS) / dumpLimit
let restoreRatio = median(restoreS) / restoreLimit
let sizeRatio = Double(imageBytes) / Double(bytes)
func gbps(_ s: Double) -> String { String(format: "%.2f GB/s", Double(bytes) / s / 1e9) }
func f(_ x: Double) -> String { String(format: "%.3f", x) }
print("scenario single-\(mib)m: one process, \(mib) MiB written anonymous memory; workload after 3 C/R rounds: \(verdict)")
print("limits: memcpy \(gbps(memcpyS)), fresh-memory fill \(gbps(freshFillS)), process_vm_readv \(gbps(readvS)), new-file write \(gbps(fileWriteS)), file read \(gbps(fileReadS))")
print("dump    \(f(median(dumpS))) s   limit (readv + write) \(f(dumpLimit)) s   ratio \(f(dumpRatio))   goal <= 1.25")
print("frozen  \(f(median(frozenS))) s")
print("restore \(f(median(restoreS))) s   limit (read + fill)   \(f(restoreLimit)) s   ratio \(f(restoreRatio))   goal <= 1.25")
print("image   \(imageBytes) bytes for \(bytes) touched   ratio \(String(format: "%.4f", sizeRatio))   goal <= 1.01")
let treeDumpRatio = median(tree.dump) / median(dumpS), treeRestoreRatio = median(tree.restore) / median(restoreS)
print("scenario tree-\(treeProcs)x\(perProc)m: \(treeProcs) processes, \(perProc) MiB each; workload after 3 C/R rounds: \(treeVerdict)")
print("dump    \(f(median(tree.dump))) s   vs single \(f(median(dumpS))) s   ratio \(f(treeDumpRatio))   goal <= 1.5")
print("frozen  \(f(median(tree.frozen))) s")
print("restore \(f(median(tree.restore))) s   vs single \(f(median(restoreS))) s   ratio \(f(treeRestoreRatio))   goal <= 1.5")
print("image   \(tree.image) bytes for \(treeProcs * (perProc << 20)) touched")
let json: [String: Any] = [
    "scenario": "single-\(mib)m", "bytes": bytes, "workload": verdict,
    "limits_seconds": ["memcpy": memcpyS, "fresh_fill": freshFillS, "process_vm_readv": readvS, "file_write": fileWriteS, "file_read": fileReadS],
    "dump_seconds": dumpS, "frozen_seconds": frozenS, "restore_seconds": restoreS, "image_bytes": imageBytes,
    "ratios": ["dump": dumpRatio, "restore": restoreRatio, "image_size": sizeRatio],
    "tree": ["scenario": "tree-\(treeProcs)x\(perProc)m", "processes": treeProcs, "workload": treeVerdict,
             "dump_seconds": tree.dump, "frozen_seconds": tree.frozen, "restore_seconds": tree.restore, "image_bytes": tree.image,
             "ratios_vs_single": ["dump": treeDumpRatio, "restore": treeRestoreRatio]],
]
try? FileManager.default.createDirectory(atPath: (jsonPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
try data.write(to: URL(fileURLWithPath: jsonPath))
print("json: \(jsonPath)")
