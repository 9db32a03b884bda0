// Scenario "stream" (issue 10): one process holding N MiB (default 1024) of written anonymous
// memory, checkpointed and brought back three ways; each time from the start of the dump to
// the restored process answering a request (SIGUSR1: it rewrites 0.1% of its pages and
// appends a line to a file; the answer is that line):
//   disk        cryo dump -D into a tmpfs folder, then cryo restore -D
//   stream      cryo dump --stream-to a pipe, cryo restore --stream-from the other end
//   compressed  the same with --compress (zstd)
// Reported: each time as a ratio of disk's (goal < 1), the CPU time (user + system) of the
// dump and the restore each way, the load averages, the peak RSS of the dump writing the
// stream (it must not grow with N), and the machine's limit: N MiB through a pipe.
import CKernel
import Engine
import Foundation
import Glibc
import ZDTMCore

/// Seconds to push `bytes` through a pipe, large writes, a thread reading and discarding.
func rawPipe(bytes: Int) -> Double {
    var p: [Int32] = [-1, -1]
    guard pipe(&p) == 0 else { die("pipe failed") }
    _ = fcntl(p[1], 1031 /* F_SETPIPE_SZ */, 1 << 20)
    let readEnd = p[0]
    let done = DispatchSemaphore(value: 0)
    let reader = Thread {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        while read(readEnd, buf, 1 << 20) > 0 {}
        buf.deallocate()
        done.signal()
    }
    reader.start()
    let chunk = 1 << 20
    let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
    memset(buf, 7, chunk)
    defer { buf.deallocate() }
    let t = timed {
        var sent = 0
        while sent < bytes { let n = write(p[1], buf, min(chunk, bytes - sent)); if n <= 0 { break }; sent += n }
        close(p[1])
        done.wait()
    }
    close(p[0])
    return t
}

func runStreamBench(mib: Int, parent: String, jsonPath: String) throws {
    var work = Array("\(parent)/cryo-bench-stream-XXXXXX".utf8CString)
    guard let wp = mkdtemp(&work) else { die("cannot create a folder in \(parent)") }
    let root = String(cString: wp)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let hogDir = root + "/hog"
    let cryo = binDir + "/cryo"
    let pid = try startHog(hogDir, args: ["\(mib)", "1"])
    let timesFile = hogDir + "/rewrite.times"
    func answers() -> Int { ((try? String(contentsOfFile: timesFile, encoding: .utf8)) ?? "").split(separator: "\n").count }
    /// The dumped process reaped (we are its subreaper), so its pid is free for the restore.
    func gone() { while kill(pid, 0) == 0 { var st: Int32 = 0; _ = waitpid(pid, &st, WNOHANG); usleep(500) } }
    func ask(_ t0: Double, before: Int) -> Double {
        kill(pid, SIGUSR1)
        while answers() == before {
            if now() - t0 > 600 { die("no answer") }
            usleep(200)
        }
        return now() - t0
    }
    func check(_ st: Int32, _ what: String, _ log: String) {
        guard Subprocess.exitCode(st) == 0 else { die("\(what) failed: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")") }
    }

    /// The CPU seconds of the dump and restore since `c0`: the dumped process (reaped meanwhile,
    /// its whole life counted by getrusage) is taken out.
    func cpuSince(_ c0: Double, hog: Double) -> Double { childrenCPU() - c0 - hog }

    func viaDisk(_ i: Int) throws -> (seconds: Double, cpu: Double) {
        let images = root + "/img\(i)"
        let before = answers()
        let hog = processCPU(pid), c0 = childrenCPU()
        let t0 = now()
        check(try Subprocess.run(cryo, ["dump", "-t", "\(pid)", "-D", images], log: root + "/dump.log", timeout: 600), "dump", root + "/dump.log")
        gone()
        check(try Subprocess.run(cryo, ["restore", "-d", "-D", images], log: root + "/restore.log", timeout: 600), "restore", root + "/restore.log")
        let cpu = cpuSince(c0, hog: hog)
        let t = ask(t0, before: before)
        try? FileManager.default.removeItem(atPath: images)
        return (t, cpu)
    }

    /// Returns the time to the answer and the dump's peak RSS in KiB.
    func viaStream(compress: Bool) throws -> (seconds: Double, dumpRSSKiB: Int, cpu: Double) {
        var p: [Int32] = [-1, -1]
        guard pipe(&p) == 0 else { die("pipe failed") }
        for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let before = answers()
        let hog = processCPU(pid), c0 = childrenCPU()
        let t0 = now()
        let restore = try Subprocess.spawn(cryo, ["restore", "-d", "--stream-from", "3", "-D", root], output: root + "/restore-stream.log", passFd: p[0])
        close(p[0])
        let dump = try Subprocess.spawn(cryo, ["dump", "-t", "\(pid)", "--stream-to", "3", "-D", root] + (compress ? ["--compress"] : []),
                                        output: root + "/dump-stream.log", passFd: p[1])
        close(p[1])
        var st: Int32 = 0
        var ru = rusage()
        while wait4(dump, &st, 0, &ru) < 0 && errno == EINTR {}
        check(st, "dump --stream-to", root + "/dump-stream.log")
        gone()
        guard let rs = try Subprocess.wait(restore, timeout: 600) else { die("restore --stream-from did not end") }
        check(rs, "restore --stream-from", root + "/restore-stream.log")
        let cpu = cpuSince(c0, hog: hog)
        return (ask(t0, before: before), Int(ru.ru_maxrss), cpu)
    }

    // Interleaved rounds, so a busy machine weighs on every way alike.
    var disk: [Double] = [], plain: [Double] = [], packed: [Double] = [], limit: [Double] = []
    var rss: [Int] = [], packedRSS: [Int] = []
    var diskCPU: [Double] = [], plainCPU: [Double] = [], packedCPU: [Double] = []
    let loadBefore = loadAverage()
    for i in 0..<3 {
        limit.append(rawPipe(bytes: mib << 20))
        let d = try viaDisk(i)
        disk.append(d.seconds); diskCPU.append(d.cpu)
        let s = try viaStream(compress: false)
        plain.append(s.seconds); rss.append(s.dumpRSSKiB); plainCPU.append(s.cpu)
        let c = try viaStream(compress: true)
        packed.append(c.seconds); packedRSS.append(c.dumpRSSKiB); packedCPU.append(c.cpu)
    }
    let loadAfter = loadAverage()
    let verdict = try finishHog(pid, hogDir)
    let d = median(disk), s = median(plain), c = median(packed), l = median(limit)
    func f(_ x: Double) -> String { String(format: "%.3f", x) }
    print("scenario stream-\(mib)m: one process, \(mib) MiB of written anonymous memory, dump start to the restored process answering; workload: \(verdict)")
    print("limit       \(mib) MiB through a pipe \(f(l)) s (\(String(format: "%.2f GB/s", Double(mib << 20) / l / 1e9)))")
    print("disk        dump into \(parent), restore: \(f(d)) s")
    print("stream      dump | restore through a pipe: \(f(s)) s   ratio stream/disk \(f(s / d))   goal < 1   dump peak RSS \(rss.max()!) KiB")
    print("compressed  the same with --compress: \(f(c)) s   ratio compressed/disk \(f(c / d))   dump peak RSS \(packedRSS.max()!) KiB")
    print("            stream time / pipe limit \(f(s / l)); dump peak RSS / checkpoint size \(String(format: "%.4f", Double(rss.max()! << 10) / Double(mib << 20)))")
    let dc = median(diskCPU), sc = median(plainCPU), cc = median(packedCPU)
    print("cpu         dump + restore, user + sys: disk \(f(dc)) s, stream \(f(sc)) s (stream/disk \(f(sc / dc))), compressed \(f(cc)) s (\(f(cc / dc)))")
    print("load        \(loadBefore) before, \(loadAfter) after (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
    let json: [String: Any] = [
        "scenario": "stream-\(mib)m", "bytes": mib << 20, "workload": verdict, "dir": parent,
        "pipe_limit_seconds": limit, "disk_seconds": disk, "stream_seconds": plain, "compressed_seconds": packed,
        "stream_dump_peak_rss_kib": rss, "compressed_dump_peak_rss_kib": packedRSS,
        "disk_cpu_seconds": diskCPU, "stream_cpu_seconds": plainCPU, "compressed_cpu_seconds": packedCPU,
        "load_before": loadBefore, "load_after": loadAfter,
        "ratios": ["stream_over_disk": s / d, "compressed_over_disk": c / d, "stream_over_pipe_limit": s / l,
                   "stream_cpu_over_disk_cpu": sc / dc, "compressed_cpu_over_disk_cpu": cc / dc],
        "goals": ["stream_over_disk": 1.0, "compressed_over_disk": 1.0],
    ]
    try? FileManager.default.createDirectory(atPath: (jsonPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: jsonPath))
    print("json: \(jsonPath)")
}
