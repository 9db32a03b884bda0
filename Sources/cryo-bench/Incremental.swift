// Scenario "incremental" (issue 5): one process with N MiB (default 1024) of written anonymous
// memory that rewrites 1% of its pages at random between snapshots. Two pre-dumps, then a
// final incremental dump, then a restore from the chain and the workload's own check.
//   final image size   as a fraction of the memory          (goal <= 0.02)
//   final dump frozen  vs a full dump's frozen time, same run (goal <= 0.10)
//   write slowdown     the workload's 1% rewrite with tracking armed vs without (a ratio)
import CKernel
import Engine
import Foundation
import Glibc
import ZDTMCore

func runIncremental(mib: Int, parent: String, jsonPath: String) throws {
    let bytes = mib << 20
    var work = Array("\(parent)/cryo-bench-inc-XXXXXX".utf8CString)
    guard let wp = mkdtemp(&work) else { die("cannot create a folder in \(parent)") }
    let root = String(cString: wp)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let hogDir = root + "/hog"
    try FileManager.default.createDirectory(atPath: hogDir, withIntermediateDirectories: true)
    let starter = try Subprocess.spawn(binDir + "/memhog00", ["--pidfile=\(hogDir)/pid", "--outfile=\(hogDir)/out", "\(mib)", "10"],
                                       cwd: hogDir, output: hogDir + "/start.log")
    guard try Subprocess.wait(starter, timeout: 300) != nil else { die("memhog00 did not start") }
    guard let pid = Int32((try String(contentsOfFile: hogDir + "/pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) else { die("no pid") }

    let timesFile = hogDir + "/rewrite.times"
    func times() -> [Double] {
        ((try? String(contentsOfFile: timesFile, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Double($0) }
    }
    /// Asks the workload to rewrite 1% of its pages; returns how long its writes took.
    func rewrite() -> Double {
        let before = times().count
        kill(pid, SIGUSR1)
        let deadline = Date().addingTimeInterval(60)
        while times().count == before {
            if Date() > deadline { die("memhog00 did not rewrite its pages") }
            usleep(1000)
        }
        return times().last!
    }
    func pagesBytes(_ dir: String) -> UInt64 {
        var st = stat()
        return stat(dir + "/pages-\(pid).img", &st) == 0 ? UInt64(st.st_size) : 0
    }

    // Without tracking: the workload's own write speed, and a full dump's frozen time.
    let plainWrites = (0..<3).map { _ in rewrite() }
    var full = DumpRequest(pid: pid, imagesDir: root + "/full")
    full.leave = .running
    let fullStats = try Dumper(full).run()
    try? FileManager.default.removeItem(atPath: root + "/full")

    // No fd to pass, as CRIU users run it: cryo's keeper (a `cryo track keeper` started from the
    // cryo beside this binary) holds the tracking between the snapshots. Its own name, so a
    // keeper of someone else's chain is not measured.
    setenv("CRYO_TRACK_KEEPER", "cryo-bench-keeper.\(getpid())", 1)
    guard TrackKeeperClient.executable != nil else { die("no cryo beside cryo-bench to run the tracking keeper") }
    var preFrozen: [Double] = [], preBytes: [UInt64] = [], trackedWrites: [Double] = []
    var prev: String?
    for n in 1...2 {
        var req = PreDumpRequest(pid: pid, imagesDir: root + "/pre\(n)")
        req.prevImagesDir = prev
        let st = try PreDumper(req).run()
        preFrozen.append(st.frozenSeconds)
        preBytes.append(st.pagesBytes)
        prev = "../pre\(n)"
        trackedWrites.append(rewrite())
    }
    var fin = DumpRequest(pid: pid, imagesDir: root + "/final")
    fin.trackMem = true
    fin.prevImagesDir = prev
    let finStats = try Dumper(fin).run()
    let finalBytes = pagesBytes(root + "/final")
    while kill(pid, 0) == 0 { var st: Int32 = 0; _ = waitpid(pid, &st, WNOHANG); usleep(1000) }
    var rreq = RestoreRequest(imagesDir: root + "/final")
    rreq.detach = true
    let t0 = now()
    let restored = try Restorer(rreq).run().pid
    let restoreS = now() - t0
    kill(restored, SIGTERM)
    _ = try Subprocess.wait(restored, timeout: 300)
    let verdict = ((try? String(contentsOfFile: hogDir + "/out", encoding: .utf8)) ?? "no result").trimmingCharacters(in: .whitespacesAndNewlines)

    let sizeRatio = Double(finalBytes) / Double(bytes)
    let frozenRatio = finStats.frozenSeconds / fullStats.frozenSeconds
    let slowdown = median(trackedWrites) / median(plainWrites)
    func f(_ x: Double) -> String { String(format: "%.4f", x) }
    print("scenario incremental-\(mib)m: \(mib) MiB written, 1% of pages rewritten at random between snapshots, tracking held by cryo's keeper (no --track-store); workload after restore from the chain: \(verdict)")
    print("pre-dumps  frozen \(preFrozen.map(f)) s, pages \(preBytes) bytes")
    print("final      \(finalBytes) bytes of pages = \(f(sizeRatio)) of \(mib) MiB   goal <= 0.02")
    print("frozen     final \(f(finStats.frozenSeconds)) s vs full dump \(f(fullStats.frozenSeconds)) s   ratio \(f(frozenRatio))   goal <= 0.10")
    print("writes     1% rewrite \(f(median(plainWrites))) s untracked, \(f(median(trackedWrites))) s armed   slowdown \(String(format: "%.2f", slowdown))x")
    print("restore    from the 3-snapshot chain \(f(restoreS)) s")
    let json: [String: Any] = [
        "scenario": "incremental-\(mib)m", "bytes": bytes, "tracking_held_by": "keeper", "workload": verdict,
        "full_dump_frozen_seconds": fullStats.frozenSeconds, "full_dump_pages_bytes": fullStats.pagesBytes,
        "pre_dump_frozen_seconds": preFrozen, "pre_dump_pages_bytes": preBytes,
        "final_dump_frozen_seconds": finStats.frozenSeconds, "final_pages_bytes": finalBytes,
        "rewrite_seconds_untracked": plainWrites, "rewrite_seconds_tracked": trackedWrites,
        "restore_seconds": restoreS,
        "ratios": ["image_size": sizeRatio, "frozen_vs_full": frozenRatio, "write_slowdown": slowdown],
        "goals": ["image_size": 0.02, "frozen_vs_full": 0.10],
    ]
    try? FileManager.default.createDirectory(atPath: (jsonPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: jsonPath))
    print("json: \(jsonPath)")
}
