// Scenario "page-server" (issue 9): one process with N MiB (default 1024) of written anonymous
// memory dumped through `cryo page-server` on loopback (the server a separate process,
// writing into a tmpfs folder).
//   throughput  raw TCP loopback stream of N MiB stored into a file in the same folder (the
//               fastest of a copying sender, a zero-copy sender, and a zero-copy sender whose
//               reader recv()s into a mapping a second thread populates) / dump wall through
//               the server (goal >= 0.8); the stream whose reader discards the bytes is printed
//               too, with the best storing reader's ratio to it (what no server can go past)
//   copied      the same dump with its pages copied out (process_vm_readv, send) instead of
//               spliced by the frozen task, interleaved with it: the gain of splicing
//   frozen      final dump's frozen time at 1% dirty (two pre-dumps through the server first)
//               vs a full dump's frozen time through the server, same run
import CKernel
import Engine
import Foundation
import Glibc
import ZDTMCore

/// Seconds to push `bytes` through one loopback TCP connection, large writes, the reader
/// discarding: the machine's own limit for the page server's path.
func rawLoopbackStream(bytes: Int) throws -> Double {
    let (lfd, port) = try TCP.listen(address: "127.0.0.1", port: 0)
    defer { close(lfd) }
    let done = DispatchSemaphore(value: 0)
    let reader = Thread {
        let c = accept(lfd, nil, nil)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 4 << 20, alignment: 4096)
        var got = 0
        while got < bytes { let n = recv(c, buf, 4 << 20, 0); if n <= 0 { break }; got += n }
        buf.deallocate()
        close(c)
        done.signal()
    }
    reader.start()
    return try streamTo(port: port, bytes: bytes, until: done)
}

/// Seconds to send `bytes` to the loopback listener on `port` in 32 MiB writes, until `done`
/// says the reader has them all.
func streamTo(port: UInt16, bytes: Int, until done: DispatchSemaphore) throws -> Double {
    let chunk = 32 << 20
    let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
    memset(buf, 7, chunk)
    defer { buf.deallocate() }
    let fd = try TCP.connect(address: "127.0.0.1", port: port)
    let t = timed {
        var sent = 0
        while sent < bytes { let n = min(chunk, bytes - sent); try? TCP.writeFull(fd, buf, n); sent += n }
        done.wait()
    }
    close(fd)
    return t
}

/// `cryo page-server -D dir --port 0`, as its own process; returns its pid and port.
func startPageServer(_ dir: String, prev: String? = nil) throws -> (Int32, UInt16) {
    let out = dir + ".out"
    var args = ["page-server", "-D", dir, "--port", "0", "-v1"]
    if let prev { args += ["--prev-images-dir", prev] }
    let pid = try Subprocess.spawn(binDir + "/cryo", args, output: out)
    for _ in 0..<1000 {
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        if let line = text.split(separator: "\n").first(where: { !$0.isEmpty && $0.allSatisfy(\.isNumber) }), let port = UInt16(line) { return (pid, port) }
        usleep(10_000)
    }
    die("page server printed no port")
}

func waitServer(_ pid: Int32) throws {
    guard let st = try Subprocess.wait(pid, timeout: 120), Subprocess.exitCode(st) == 0 else { die("page server \(pid) failed") }
}

func runPageServerBench(mib: Int, parent: String, jsonPath: String) throws {
    let bytes = mib << 20
    var work = Array("\(parent)/cryo-bench-ps-XXXXXX".utf8CString)
    guard let wp = mkdtemp(&work) else { die("cannot create a folder in \(parent)") }
    let root = String(cString: wp)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let hogDir = root + "/hog"
    try FileManager.default.createDirectory(atPath: hogDir, withIntermediateDirectories: true)
    let starter = try Subprocess.spawn(binDir + "/memhog00", ["--pidfile=\(hogDir)/pid", "--outfile=\(hogDir)/out", "\(mib)", "10"],
                                       cwd: hogDir, output: hogDir + "/start.log")
    guard try Subprocess.wait(starter, timeout: 300) != nil else { die("memhog00 did not start") }
    guard let pid = Int32((try String(contentsOfFile: hogDir + "/pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) else { die("no pid") }


    /// One dump (left running) through a fresh server into root/label; removed afterwards
    /// unless `keep`.
    func dumpThroughServer(_ label: String, prev: String? = nil, preDump: Bool = false, store: Int32? = nil, keep: Bool = false, splice: Bool = true) throws -> (wall: Double, frozen: Double, bytes: UInt64) {
        let dir = root + "/" + label
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let (server, port) = try startPageServer(dir, prev: prev)
        var result: (Double, Double, UInt64) = (0, 0, 0)
        if preDump {
            var req = PreDumpRequest(pid: pid, imagesDir: dir)
            req.pageServer = PageServerTarget(address: "127.0.0.1", port: port)
            req.prevImagesDir = prev
            req.trackStore = store
            var st: PreDumper.Stats?
            let w = try timed { st = try PreDumper(req).run() }
            result = (w, st!.frozenSeconds, st!.pagesBytes)
        } else {
            var req = DumpRequest(pid: pid, imagesDir: dir)
            req.leave = .running
            req.pageServer = PageServerTarget(address: "127.0.0.1", port: port)
            req.prevImagesDir = prev
            req.trackStore = store
            req.trackMem = store != nil
            req.splicePages = splice
            var st = Dumper.Stats()
            let w = try timed { st = try Dumper(req).run() }
            result = (w, st.frozenSeconds, st.pagesBytes)
        }
        try waitServer(server)
        if !keep { try? FileManager.default.removeItem(atPath: dir) }
        return result
    }

    // The pipe the dump splices through here; 1 MiB (fs.pipe-max-size) unless cryo may go past it.
    var probe: [Int32] = [-1, -1]
    guard pipe(&probe) == 0 else { die("pipe: \(String(cString: strerror(errno)))") }
    let pipeBytes = PipeSize.grow(probe[1])
    close(probe[0]); close(probe[1])
    // Interleaved, so a busy machine weighs on the limit and on the dumps alike.
    let loadBefore = loadAverage()
    var full: [(wall: Double, frozen: Double, bytes: UInt64)] = []
    var rawS: [Double] = [], localS: [Double] = [], storedS: [Double] = [], storedZS: [Double] = [], storedMS: [Double] = [], copiedS: [Double] = [], smallPipeS: [Double] = [], perCallS: [Double] = []
    for i in 0..<3 {
        rawS.append(try rawLoopbackStream(bytes: bytes))
        storedS.append(try rawLoopbackStreamStored(bytes: bytes, dir: root, zeroCopySender: false))
        storedZS.append(try rawLoopbackStreamStored(bytes: bytes, dir: root, zeroCopySender: true))
        storedMS.append(try rawLoopbackStreamStoredMapped(bytes: bytes, dir: root))
        full.append(try dumpThroughServer("full\(i)"))
        // The same dump with the pages copied out (process_vm_readv, send), as before splicing.
        copiedS.append(try dumpThroughServer("copied\(i)", splice: false).wall)
        // Spliced with one injected vmsplice (two ptrace stops) per pipeful, as before the task's loop.
        let pipesPerWake = SplicedPages.loopPipes
        SplicedPages.loopPipes = 1
        perCallS.append(try dumpThroughServer("percall\(i)").wall)
        SplicedPages.loopPipes = pipesPerWake
        // Spliced through a 1 MiB pipe (fs.pipe-max-size), as before pipes grew: 16x the injected calls.
        if pipeBytes > 1 << 20 {
            let wanted = PipeSize.wanted
            PipeSize.wanted = 1 << 20
            smallPipeS.append(try dumpThroughServer("pipe1m\(i)").wall)
            PipeSize.wanted = wanted
        }
        var req = DumpRequest(pid: pid, imagesDir: root + "/local\(i)")
        req.leave = .running
        localS.append(try timed { try Dumper(req).run() })
        try? FileManager.default.removeItem(atPath: root + "/local\(i)")
    }
    let dumpWall = median(full.map(\.wall))
    // The limit of a page server: the bytes over loopback into the same folder, the best way this machine does it.
    let limitS = (0..<storedS.count).map { min(storedS[$0], storedZS[$0], storedMS[$0]) }
    let throughputRatio = median(limitS) / dumpWall

    // Incremental: two pre-dumps through servers keeping the chain, then the final dump.
    let store = try TrackStore.makeSocket()
    defer { close(store) }
    func rewrite() {
        let timesFile = hogDir + "/rewrite.times"
        let count = { ((try? String(contentsOfFile: timesFile, encoding: .utf8)) ?? "").split(separator: "\n").count }
        let before = count()
        kill(pid, SIGUSR1)
        let deadline = Date().addingTimeInterval(60)
        while count() == before { if Date() > deadline { die("memhog00 did not rewrite its pages") }; usleep(1000) }
    }
    let pre1 = try dumpThroughServer("pre1", preDump: true, store: store, keep: true)
    rewrite()
    let pre2 = try dumpThroughServer("pre2", prev: "../pre1", preDump: true, store: store, keep: true)
    rewrite()
    let fin = try dumpThroughServer("final", prev: "../pre2", store: store, keep: true)
    let frozenRatio = fin.frozen / median(full.map(\.frozen))
    let verdict = try finishHog(pid, hogDir)

    func f(_ x: Double) -> String { String(format: "%.3f", x) }
    func gbps(_ s: Double) -> String { String(format: "%.2f GB/s", Double(bytes) / s / 1e9) }
    print("scenario page-server-\(mib)m: \(mib) MiB written anonymous memory dumped through cryo page-server on loopback into \(parent); load average \(loadBefore) before, \(loadAverage()) after; workload: \(verdict)")
    print("spread  raw \(rawS.map(f)), stored \(storedS.map(f)), stored zero-copy sender \(storedZS.map(f)), stored mapped \(storedMS.map(f)), through the server \(full.map { f($0.wall) }), copied through the server \(copiedS.map(f)), one vmsplice per stop \(perCallS.map(f)), 1 MiB pipe \(smallPipeS.map(f)), local \(localS.map(f)) s")
    print("network raw TCP loopback stream, reader discarding \(f(median(rawS))) s (\(gbps(median(rawS))))   ratio discarded/dump \(f(median(rawS) / dumpWall))")
    print("stored  raw stream stored into a file in \(parent) (socket -> pipe -> file, as the server): copying sender \(f(median(storedS))) s, zero-copy sender \(f(median(storedZS))) s, zero-copy sender into a mapping populated ahead by a second thread \(f(median(storedMS))) s")
    print("limit   the fastest of the three per run \(f(median(limitS))) s (\(gbps(median(limitS))))   a storing reader's best / the discarding one \(f(median(rawS) / median(limitS))): the ceiling of ratio discarded/dump for any page server here")
    print("dump    through the server \(f(dumpWall)) s (\(gbps(dumpWall))), \(full[0].bytes) bytes   ratio limit/dump \(f(throughputRatio))   goal >= 0.8")
    print("copied  through the server, pages copied out instead of spliced \(f(median(copiedS))) s   ratio limit/dump \(f(median(limitS) / median(copiedS)))")
    print("percall spliced, one injected vmsplice per pipeful (\(SplicedPages.loopPipes) pipes per wake-up otherwise) \(f(median(perCallS))) s   ratio limit/dump \(f(median(limitS) / median(perCallS)))")
    if smallPipeS.isEmpty {
        print("pipe    \(pipeBytes) bytes: pipes do not grow past fs.pipe-max-size here (no CAP_SYS_RESOURCE), so no 1 MiB comparison")
    } else {
        print("pipe1m  spliced through a 1 MiB pipe \(f(median(smallPipeS))) s   ratio limit/dump \(f(median(limitS) / median(smallPipeS)))   (\(pipeBytes) bytes: \(f(dumpWall)) s)")
    }
    print("local   the same dump into \(parent) \(f(median(localS))) s   page-server dump / local dump \(f(dumpWall / median(localS)))")
    print("frozen  full dump \(f(median(full.map(\.frozen)))) s; pre-dumps \(f(pre1.frozen)), \(f(pre2.frozen)) s (\(pre1.bytes), \(pre2.bytes) bytes)")
    print("final   at 1% dirty: frozen \(f(fin.frozen)) s, \(fin.bytes) bytes sent   ratio vs full \(f(frozenRatio))")
    let json: [String: Any] = [
        "scenario": "page-server-\(mib)m", "load_average_before": loadBefore, "bytes": bytes, "workload": verdict,
        "raw_tcp_loopback_seconds": rawS, "raw_tcp_loopback_stored_seconds": storedS, "raw_tcp_loopback_stored_zero_copy_seconds": storedZS, "raw_tcp_loopback_stored_mapped_seconds": storedMS, "limit_seconds": limitS, "dump_wall_seconds": full.map(\.wall), "local_dump_wall_seconds": localS, "copied_dump_wall_seconds": copiedS, "per_call_dump_wall_seconds": perCallS, "pipes_per_wakeup": SplicedPages.loopPipes, "pipe_1m_dump_wall_seconds": smallPipeS, "pipe_bytes": pipeBytes, "dump_frozen_seconds": full.map(\.frozen),
        "dump_pages_bytes": full[0].bytes,
        "pre_dump_frozen_seconds": [pre1.frozen, pre2.frozen], "pre_dump_pages_bytes": [pre1.bytes, pre2.bytes],
        "final_frozen_seconds": fin.frozen, "final_pages_bytes": fin.bytes,
        "ratios": ["throughput_limit_over_dump": throughputRatio, "discarding_stream_over_dump": median(rawS) / dumpWall, "final_frozen_vs_full": frozenRatio, "server_over_local_dump": dumpWall / median(localS),
                   "raw_stored_over_dump": median(storedS) / dumpWall, "discarding_over_stored_limit": median(rawS) / median(limitS),
                   "throughput_limit_over_copied_dump": median(limitS) / median(copiedS),
                   "throughput_limit_over_per_call_dump": median(limitS) / median(perCallS)],
        "goals": ["throughput_limit_over_dump": 0.8],
    ]
    try? FileManager.default.createDirectory(atPath: (jsonPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    let data = try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: jsonPath))
    print("json: \(jsonPath)")
}
