// Scenario "lazy" (issue 9): one process holding N MiB (default 1024) of written anonymous
// memory, dumped once, then restored three ways from the same images:
//   plain        cryo restore, until the process answers a request
//   lazy         cryo restore --lazy-pages with cryo lazy-pages on the images (started before)
//   remote-lazy  the same from a make-lazy copy, pages fetched from cryo page-server --lazy-pages
//                over loopback
// A request is SIGUSR1: the workload rewrites 0.1% of its pages at random (a few hundred
// faults while lazy) and appends a line to a file; the answer is that line.
//   answer time ratio  lazy / plain (goal <= 0.1), and the time until every page is in
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

    // Plain.
    let plain = try restoreAndAsk(["-D", images], "restore-plain")
    gone()

    // Local lazy: the daemon is up before the restore, as on a migration target.
    let localStats = root + "/local.json"
    let d1 = try Subprocess.spawn(cryo, ["lazy-pages", "-D", images, "--stats-file", localStats], output: root + "/lazy-local.out")
    let t1 = now()
    let lazy = try restoreAndAsk(["-D", images, "--lazy-pages"], "restore-lazy")
    guard let s1 = try Subprocess.wait(d1, timeout: 600), Subprocess.exitCode(s1) == 0 else { die("lazy-pages (local) failed") }
    let localAllIn = now() - t1
    gone()

    // Remote lazy over loopback.
    let ps = try Subprocess.spawn(cryo, ["page-server", "--lazy-pages", "-D", images, "--port", "0"], output: root + "/ps.out")
    var port: UInt16?
    for _ in 0..<1000 where port == nil {
        port = ((try? String(contentsOfFile: root + "/ps.out", encoding: .utf8)) ?? "").split(separator: "\n").first.flatMap { UInt16($0) }
        usleep(10_000)
    }
    guard let port else { Subprocess.kill9(ps); die("page server printed no port") }
    let remoteStats = root + "/remote.json"
    let d2 = try Subprocess.spawn(cryo, ["lazy-pages", "--page-server", "--port", "\(port)", "-D", stripped, "--stats-file", remoteStats], output: root + "/lazy-remote.out")
    let t2 = now()
    let remote = try restoreAndAsk(["-D", stripped, "--lazy-pages"], "restore-remote-lazy")
    guard let s2 = try Subprocess.wait(d2, timeout: 600), Subprocess.exitCode(s2) == 0 else { Subprocess.kill9(ps); die("lazy-pages (remote) failed") }
    let remoteAllIn = now() - t2
    if try Subprocess.wait(ps, timeout: 10) == nil { Subprocess.kill9(ps) }
    let verdict = try finishHog(pid, hogDir)

    let ls = stats(localStats), rs = stats(remoteStats)
    func f(_ x: Any?) -> Double { (x as? Double) ?? Double(x as? Int ?? 0) }
    print("scenario lazy-\(mib)m: one process, \(mib) MiB; workload after plain, lazy and remote-lazy restores: \(verdict)")
    print(String(format: "  plain restore to first answer      %.3f s", plain))
    print(String(format: "  lazy restore to first answer       %.3f s  ratio %.3f (goal <= 0.1); every page in after %.3f s", lazy, lazy / plain, localAllIn))
    print(String(format: "  remote-lazy restore to first answer %.3f s ratio %.3f; every page in after %.3f s", remote, remote / plain, remoteAllIn))
    print("  cryo restore returned after: " + restored.sorted { $0.key < $1.key }.map { String(format: "%@ %.3f s", $0.key, $0.value) }.joined(separator: ", "))
    print(String(format: "  fault service local   p50 %.1f us  p99 %.1f us  (%d faults)", f(ls["fault_latency_us_p50"]), f(ls["fault_latency_us_p99"]), Int(f(ls["faults"]))))
    print(String(format: "  fault service remote  p50 %.1f us  p99 %.1f us  (%d faults)", f(rs["fault_latency_us_p50"]), f(rs["fault_latency_us_p99"]), Int(f(rs["faults"]))))
    let out: [String: Any] = [
        "scenario": "lazy-\(mib)m", "bytes": mib << 20, "workload": verdict,
        "plain_restore_to_answer_s": plain,
        "lazy_restore_to_answer_s": lazy, "lazy_answer_ratio": lazy / plain, "lazy_all_in_s": localAllIn,
        "remote_lazy_restore_to_answer_s": remote, "remote_lazy_answer_ratio": remote / plain, "remote_lazy_all_in_s": remoteAllIn,
        "local_daemon": ls, "remote_daemon": rs, "restore_returned_s": restored,
    ]
    try? FileManager.default.createDirectory(atPath: (jsonPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: out, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: jsonPath))
    print("json: \(jsonPath)")
}
