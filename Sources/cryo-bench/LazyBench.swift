// Scenario "lazy" (issue 9): one process holding N MiB (default 1024) of written anonymous
// memory, dumped once, then restored three ways from the same images:
//   plain        cryo restore, until the process answers a request
//   lazy         cryo restore --lazy-pages with cryo lazy-pages on the images (started before)
//   remote-lazy  the same from a make-lazy copy, pages fetched from cryo page-server --lazy-pages
//                over loopback
// A request is SIGUSR1: the workload rewrites 0.1% of its pages at random (a few hundred
// faults while lazy) and appends a line to a file; the answer is that line.
//   answer time ratio  lazy / plain of the same round (goal <= 0.1), and the time until every page is in
// --rounds N (default 3) rounds of the three, interleaved; spreads and the load average printed.
//   fault service      p50/p99 from reading a fault to its page being in, local and remote
// The workload checks all of its memory at the end.
import CKernel
import Engine
import Foundation
import Glibc
import ZDTMCore

func runLazy(mib: Int, parent: String, jsonPath: String) throws {
    var work = Array("\(parent)/cryo-bench-lazy-XXXXXX".utf8CString)
    guard let wp = mkdtemp(&work) else { die("cannot create a folder in \(parent)") }
    let root = String(cString: wp)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let hogDir = root + "/hog", images = root + "/img", stripped = root + "/img-lazy"
    let cryo = binDir + "/cryo"
    let pid = try startHog(hogDir, args: ["\(mib)", "1"])
    let timesFile = hogDir + "/rewrite.times"
    func answers() -> Int { ((try? String(contentsOfFile: timesFile, encoding: .utf8)) ?? "").split(separator: "\n").count }
    func run(_ args: [String], _ name: String) throws {
        let st = try Subprocess.run(cryo, args, log: root + "/\(name).log", timeout: 600)
        guard Subprocess.exitCode(st) == 0 else { die("cryo \(args.joined(separator: " ")) failed: \((try? String(contentsOfFile: root + "/\(name).log", encoding: .utf8)) ?? "")") }
    }
    var restored: [String: Double] = [:]
    /// Restores with `args`, asks one request; returns the seconds from the restore's start to the answer.
    func restoreAndAsk(_ args: [String], _ name: String) throws -> Double {
        let before = answers()
        let t0 = now()
        try run(["restore", "-d"] + args, name)
        restored[name] = now() - t0
        kill(pid, SIGUSR1)
        while answers() == before {
            if now() - t0 > 300 { die("no answer after \(name)") }
            usleep(200)
        }
        return now() - t0
    }
    func gone() { kill(pid, SIGKILL); while kill(pid, 0) == 0 { var st: Int32 = 0; _ = waitpid(pid, &st, WNOHANG); usleep(1000) } }
    func stats(_ file: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file)))) as? [String: Any] ?? [:]
    }

    try run(["dump", "-t", "\(pid)", "-D", images], "dump")
    gone()
    try run(["image", "make-lazy", images, stripped], "make-lazy")

    // Rounds of plain, lazy and remote-lazy in turn, so the machine's load weighs on all three.
    let rounds = max(1, Int(arg("--rounds") ?? "3") ?? 3)
    let loadBefore = loadAverage()
    var plainS: [Double] = [], lazyS: [Double] = [], remoteS: [Double] = [], localAllIn: [Double] = [], remoteAllIn: [Double] = []
    var localDaemons: [[String: Any]] = [], remoteDaemons: [[String: Any]] = []
    var returned: [[String: Double]] = []
    for round in 0..<rounds {
        restored = [:]
        plainS.append(try restoreAndAsk(["-D", images], "restore-plain"))
        gone()

        // Local lazy: the daemon is up before the restore, as on a migration target.
        let localStats = root + "/local-\(round).json"
        let d1 = try Subprocess.spawn(cryo, ["lazy-pages", "-D", images, "--stats-file", localStats], output: root + "/lazy-local-\(round).out")
        waitListening(images + "/lazy-pages.socket", d1)
        let t1 = now()
        lazyS.append(try restoreAndAsk(["-D", images, "--lazy-pages"], "restore-lazy"))
        guard let s1 = try Subprocess.wait(d1, timeout: 600), Subprocess.exitCode(s1) == 0 else { die("lazy-pages (local) failed") }
        localAllIn.append(now() - t1)
        gone()

        // Remote lazy over loopback.
        let ps = try Subprocess.spawn(cryo, ["page-server", "--lazy-pages", "-D", images, "--port", "0"], output: root + "/ps-\(round).out")
        var port: UInt16?
        for _ in 0..<1000 where port == nil {
            port = ((try? String(contentsOfFile: root + "/ps-\(round).out", encoding: .utf8)) ?? "").split(separator: "\n").first.flatMap { UInt16($0) }
            if port == nil { usleep(10_000) }
        }
        guard let port else { Subprocess.kill9(ps); die("page server printed no port") }
        let remoteStats = root + "/remote-\(round).json"
        let d2 = try Subprocess.spawn(cryo, ["lazy-pages", "--page-server", "--port", "\(port)", "-D", stripped, "--stats-file", remoteStats], output: root + "/lazy-remote-\(round).out")
        waitListening(stripped + "/lazy-pages.socket", d2)
        let t2 = now()
        remoteS.append(try restoreAndAsk(["-D", stripped, "--lazy-pages"], "restore-remote-lazy"))
        guard let s2 = try Subprocess.wait(d2, timeout: 600), Subprocess.exitCode(s2) == 0 else { Subprocess.kill9(ps); die("lazy-pages (remote) failed") }
        remoteAllIn.append(now() - t2)
        if try Subprocess.wait(ps, timeout: 10) == nil { Subprocess.kill9(ps) }
        if round < rounds - 1 { gone() }
        localDaemons.append(stats(localStats))
        remoteDaemons.append(stats(remoteStats))
        returned.append(restored)
    }
    let loadAfter = loadAverage()
    let verdict = try finishHog(pid, hogDir)

    func f(_ x: Any?) -> Double { (x as? Double) ?? Double(x as? Int ?? 0) }
    func spread(_ xs: [Double], _ fmt: String = "%.3f") -> String {
        String(format: "median \(fmt) (min \(fmt), max \(fmt))", median(xs), xs.min()!, xs.max()!)
    }
    let lazyRatios = zip(lazyS, plainS).map { $0 / $1 }, remoteRatios = zip(remoteS, plainS).map { $0 / $1 }
    print("scenario lazy-\(mib)m: one process, \(mib) MiB, \(rounds) round(s); load average \(loadBefore) before, \(loadAfter) after; workload after every restore: \(verdict)")
    print("  plain restore to first answer        s: \(spread(plainS))")
    print("  lazy restore to first answer         s: \(spread(lazyS))   ratio to plain (same round): \(spread(lazyRatios)) (goal <= 0.1)")
    print("  remote-lazy restore to first answer  s: \(spread(remoteS))   ratio: \(spread(remoteRatios))")
    print("  every page in after                  lazy \(spread(localAllIn)) s, remote \(spread(remoteAllIn)) s")
    for name in ["restore-plain", "restore-lazy", "restore-remote-lazy"] {
        print("  cryo restore returned after          \(name): \(spread(returned.compactMap { $0[name] })) s")
    }
    for (label, ds) in [("local ", localDaemons), ("remote", remoteDaemons)] {
        let p50 = ds.map { f($0["fault_latency_us_p50"]) }, p99 = ds.map { f($0["fault_latency_us_p99"]) }
        print("  fault service \(label)  p50 us: \(spread(p50, "%.1f"))   p99 us: \(spread(p99, "%.1f"))   faults per round: \(ds.map { Int(f($0["faults"])) })")
    }
    let out: [String: Any] = [
        "scenario": "lazy-\(mib)m", "bytes": mib << 20, "workload": verdict, "rounds": rounds,
        "load_average_before": loadBefore, "load_average_after": loadAfter,
        "plain_restore_to_answer_s": plainS,
        "lazy_restore_to_answer_s": lazyS, "lazy_answer_ratio": lazyRatios, "lazy_answer_ratio_median": median(lazyRatios), "lazy_all_in_s": localAllIn,
        "remote_lazy_restore_to_answer_s": remoteS, "remote_lazy_answer_ratio": remoteRatios, "remote_lazy_all_in_s": remoteAllIn,
        "local_daemon": localDaemons, "remote_daemon": remoteDaemons, "restore_returned_s": returned,
    ]
    try? FileManager.default.createDirectory(atPath: (jsonPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: jsonPath))
    print("json: \(jsonPath)")
}

/// /proc/loadavg's three averages, as printed there.
func loadAverage() -> String {
    ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "").split(separator: " ").prefix(3).joined(separator: " ")
}

/// Waits until the lazy-pages daemon `pid` listens at `path` (a restore started earlier finds no daemon).
func waitListening(_ path: String, _ pid: Int32) {
    for _ in 0..<3000 {
        if access(path, F_OK) == 0 { return }
        if kill(pid, 0) != 0 { die("cryo lazy-pages \(pid) exited before listening at \(path)") }
        usleep(10_000)
    }
    die("cryo lazy-pages \(pid) not listening at \(path) after 30 s")
}
