// Scenario "remote" (issue 10): one process with N MiB (default 1024) of written anonymous
// memory, from the start of the dump until the restored process runs again (restore -d has
// returned), through the real CLI:
//   disk    cryo dump -D DIR (tmpfs) + cryo restore -D DIR -d
//   remote  cryo dump --remote through cryo image-proxy + cryo restore --remote from cryo
//           image-cache, both daemons on loopback (ratio remote/disk; goal < 1); the daemons'
//           peak RSS (VmHWM) and the bytes the cache held (memfds, not in its RSS)
// and `cryo migrate` to `cryo migrate-receive` on loopback with 1% of the pages rewritten every
// second: downtime / (disk dump + restore) of the same process.
import Engine
import Foundation
import Glibc
import ZDTMCore

func peakRSS(_ pid: Int32) -> Int {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return 0 }
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}

func cli(_ args: [String], _ log: String) throws -> String {
    let st = try Subprocess.run(binDir + "/cryo", args, log: log, timeout: 600)
    let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    guard Subprocess.exitCode(st) == 0 else { die("cryo \(args.joined(separator: " ")) failed: \(out)") }
    return out
}

func waitPidGone(_ pid: Int32) { _ = try? Subprocess.wait(pid, timeout: 60); for _ in 0..<5000 where kill(pid, 0) == 0 { usleep(1000) } }

func runRemoteBench(mib: Int, parent: String, jsonPath: String) throws {
    var work = Array("\(parent)/cryo-bench-rm-XXXXXX".utf8CString)
    guard let wp = mkdtemp(&work) else { die("cannot create a folder in \(parent)") }
    let root = String(cString: wp)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let hogDir = root + "/hog"
    let pid = try startHog(hogDir, args: ["\(mib)", "10"])

    // Daemons on loopback.
    let cacheOut = root + "/cache.out", cacheSock = root + "/cache.sock", proxySock = root + "/proxy.sock"
    let cache = try Subprocess.spawn(binDir + "/cryo", ["image-cache", "--port", "0", "--local-cache-path", cacheSock, "-v1"], output: cacheOut)
    var port: UInt16 = 0
    for _ in 0..<1000 where port == 0 {
        port = UInt16(((try? String(contentsOfFile: cacheOut, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        usleep(10_000)
    }
    let proxy = try Subprocess.spawn(binDir + "/cryo", ["image-proxy", "--port", String(port), "--local-proxy-path", proxySock, "-v1"], output: root + "/proxy.out")
    for _ in 0..<1000 where access(proxySock, F_OK) != 0 { usleep(10_000) }
    defer { Subprocess.kill9(proxy); Subprocess.kill9(cache) }

    var disk: [Double] = [], remote: [Double] = []
    // CPU (user + sys) of dump and restore, and of proxy and cache; the dumped process's own
    // time (counted when it is reaped) is taken out.
    var diskCPU: [Double] = [], remoteCPU: [Double] = []
    let loadBefore = loadAverage()
    for i in 0..<2 {
        let d = root + "/disk\(i)"
        var hog = processCPU(pid)
        let (dt, dc) = try withCPU { try timed {
            _ = try cli(["dump", "-t", String(pid), "-D", d], root + "/dump.log")
            waitPidGone(pid)
            _ = try cli(["restore", "-D", d, "-d"], root + "/restore.log")
        } }
        disk.append(dt); diskCPU.append(dc - hog)
        try? FileManager.default.removeItem(atPath: d)
        hog = processCPU(pid)
        let (rt, rc) = try withCPU(daemons: [proxy, cache]) { try timed {
            _ = try cli(["dump", "-t", String(pid), "-D", "snap\(i)", "--remote", "--local-proxy-path", proxySock], root + "/rdump.log")
            waitPidGone(pid)
            _ = try cli(["restore", "-D", "snap\(i)", "--remote", "--local-cache-path", cacheSock, "-d"], root + "/rrestore.log")
        } }
        remote.append(rt); remoteCPU.append(rc - hog)
    }
    let loadAfter = loadAverage()
    let proxyRSS = peakRSS(proxy), cacheRSS = peakRSS(cache)

    // migrate at 1% dirty per second, then again (the restored process) with a lazy restore.
    func migrateOnce(lazy: Bool) throws -> (downtime: Double, out: String, receiver: String) {
        let tag = lazy ? "-lazy" : ""
        let recvOut = root + "/recv\(tag).out"
        let recv = try Subprocess.spawn(binDir + "/cryo", ["migrate-receive", "--port", "0", "-v1"], output: recvOut)
        defer { Subprocess.kill9(recv) }
        var rport: UInt16 = 0
        for _ in 0..<1000 where rport == 0 {
            rport = UInt16(((try? String(contentsOfFile: recvOut, encoding: .utf8)) ?? "").split(separator: "\n").first.map { String($0) } ?? "") ?? 0
            usleep(10_000)
        }
        final class Flag: @unchecked Sendable { var stop = false }
        let stopDirty = Flag()
        let dirtier = Thread { while !stopDirty.stop { kill(pid, SIGUSR1); sleep(1) } }
        dirtier.start()
        let mlog = root + "/migrate\(tag).out"
        let m = try Subprocess.spawn(binDir + "/cryo", ["migrate", "-t", String(pid), "--to", "127.0.0.1:\(rport)"] + (lazy ? ["--lazy-pages"] : []), output: mlog)
        // We are the workload's subreaper: reap its old pid so the receiver can take it back.
        var mst: Int32?
        while mst == nil { var st: Int32 = 0; _ = waitpid(pid, &st, WNOHANG); mst = try Subprocess.wait(m, timeout: 0); usleep(2000) }
        stopDirty.stop = true
        let mout = (try? String(contentsOfFile: mlog, encoding: .utf8)) ?? ""
        guard Subprocess.exitCode(mst!) == 0, let dl = mout.split(separator: "\n").first(where: { $0.contains("downtime") }),
              let downtime = Double(dl.split(separator: " ").dropLast().last ?? "") else { die("cryo migrate failed: \(mout)") }
        // A lazy receiver ends once every page is in.
        _ = try Subprocess.wait(recv, timeout: 120)
        let rout = ((try? String(contentsOfFile: recvOut, encoding: .utf8)) ?? "").split(separator: "\n").dropFirst().joined(separator: "\n")
        return (downtime, mout, rout)
    }
    let (downtime, mout, _) = try migrateOnce(lazy: false)
    let (lazyDowntime, lazyOut, lazyRecv) = try migrateOnce(lazy: true)
    let verdict = try finishHog(pid, hogDir)

    func f(_ x: Double) -> String { String(format: "%.3f", x) }
    let ratio = median(remote) / median(disk)
    print("scenario remote-\(mib)m: \(mib) MiB written anonymous memory, dump start to restored process running, CLI; workload: \(verdict)")
    print("disk    dump to \(parent) + restore: \(disk.map(f)) s")
    print("remote  dump --remote via image-proxy + restore --remote from image-cache (loopback): \(remote.map(f)) s   remote/disk \(f(ratio))   goal < 1")
    print("cpu     user + sys of dump and restore: disk \(diskCPU.map(f)) s, remote (proxy and cache included) \(remoteCPU.map(f)) s   remote/disk \(f(median(remoteCPU) / median(diskCPU)))")
    print("load    \(loadBefore) before, \(loadAfter) after (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
    print("rss     peak: image-proxy \(proxyRSS >> 20) MiB, image-cache \(cacheRSS >> 20) MiB (images held in memfds, not counted)")
    print("migrate at 1%/s dirty:\n" + mout.split(separator: "\n").map { "        " + $0 }.joined(separator: "\n"))
    print("        downtime / (disk dump + restore) \(f(downtime)) / \(f(median(disk))) = \(f(downtime / median(disk)))")
    print("migrate --lazy-pages (the restored process again):\n" + (lazyOut + "\n" + lazyRecv).split(separator: "\n").map { "        " + $0 }.joined(separator: "\n"))
    print("        downtime / (disk dump + restore) \(f(lazyDowntime)) / \(f(median(disk))) = \(f(lazyDowntime / median(disk)))")
    let json: [String: Any] = [
        "scenario": "remote-\(mib)m", "workload": verdict, "disk_seconds": disk, "remote_seconds": remote,
        "disk_cpu_seconds": diskCPU, "remote_cpu_seconds": remoteCPU, "load_before": loadBefore, "load_after": loadAfter,
        "proxy_peak_rss_bytes": proxyRSS, "cache_peak_rss_bytes": cacheRSS, "migrate_output": mout, "migrate_downtime_seconds": downtime, "migrate_lazy_output": lazyOut + "\n" + lazyRecv, "migrate_lazy_downtime_seconds": lazyDowntime,
        "ratios": ["remote_over_disk": ratio, "remote_cpu_over_disk_cpu": median(remoteCPU) / median(diskCPU), "migrate_downtime_over_dump_restore": downtime / median(disk),
                   "migrate_lazy_downtime_over_dump_restore": lazyDowntime / median(disk)],
        "goals": ["remote_over_disk": 1.0],
    ]
    try? FileManager.default.createDirectory(atPath: (jsonPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: jsonPath))
    print("json: \(jsonPath)")
}
