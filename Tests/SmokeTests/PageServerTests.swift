import CKernel
import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// `cryo page-server` as a real process on loopback, and `cryo dump|pre-dump --page-server`.
final class PageServerTests: XCTestCase {
    var h: CRHarness!
    var servers: [Int32] = []

    override func setUpWithError() throws { h = try CRHarness.make(name) }

    override func tearDown() {
        for s in servers { Subprocess.kill9(s) }
        h?.remove()
    }

    /// Starts `cryo page-server --port 0 ARGS` and returns its pid and port.
    func startServer(_ dir: String, _ args: [String] = []) throws -> (pid: Int32, port: UInt16) {
        let out = h.dir + "/ps-\(UUID().uuidString).log"
        let pid = try Subprocess.spawn(h.bin + "/cryo", ["page-server", "-D", dir, "--port", "0", "-v4"] + args, output: out)
        servers.append(pid)
        for _ in 0..<3000 {
            let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
            if let line = text.split(separator: "\n").first(where: { !$0.isEmpty && $0.allSatisfy(\.isNumber) }), let port = UInt16(line) {
                return (pid, port)
            }
            usleep(10_000)
        }
        XCTFail("page server printed no port: \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        throw XCTSkip("no server")
    }

    func connect(_ port: UInt16) throws -> Int32 { try TCP.connect(address: "127.0.0.1", port: port) }

    /// True when the server closed the connection (it reads EOF or a reset) within 5 s.
    func closedByServer(_ fd: Int32) -> Bool {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var b = [UInt8](repeating: 0, count: 64)
        while true {
            let n = recv(fd, &b, b.count, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    func files(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    func send(_ fd: Int32, _ hs: [PageServerHeader], payload: [UInt8] = []) {
        var b: [UInt8] = []
        for x in hs { b += x.bytes }
        b += payload
        _ = try? TCP.writeFull(fd, b)
    }

    // MARK: hostile clients

    func testBadClientsAreDroppedAndTheServerServesOthers() throws {
        let root = h.dir + "/srv"
        let dir = root + "/img"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let (server, port) = try startServer(dir)

        // Garbage: an unknown command.
        var fd = try connect(port)
        _ = try TCP.writeFull(fd, [UInt8](repeating: 0xA5, count: 32))
        XCTAssertTrue(closedByServer(fd), "garbage"); close(fd)
        // Oversized: one ADD_F announcing 2^40 pages.
        fd = try connect(port)
        send(fd, [PageServerHeader(.open2, type: .pagemap, id: 42)])
        var answer: UInt8 = 9
        XCTAssertEqual(try TCP.readFull(fd, &answer, 1), 1); XCTAssertEqual(answer, 0)
        send(fd, [PageServerHeader(.addF, flags: 4, nrPages: 1 << 40, vaddr: 0x10000, type: .pagemap, id: 42)])
        XCTAssertTrue(closedByServer(fd), "oversized"); close(fd)
        // An address outside user space, unaligned addresses, unknown flags, in-parent without a parent.
        for bad in [PageServerHeader(.addF, flags: 4, nrPages: 1, vaddr: 1 << 60, type: .pagemap, id: 42),
                    PageServerHeader(.addF, flags: 4, nrPages: 1, vaddr: 0x10001, type: .pagemap, id: 42),
                    PageServerHeader(.addF, flags: 0x8000, nrPages: 1, vaddr: 0x10000, type: .pagemap, id: 42),
                    PageServerHeader(.addF, flags: 1, nrPages: 1, vaddr: 0x10000, type: .pagemap, id: 42)] {
            fd = try connect(port)
            send(fd, [bad])
            XCTAssertTrue(closedByServer(fd), "\(bad)"); close(fd)
        }
        // Path traversal: ids are numbers and the type byte is checked, so "../../x" in dst_id is refused.
        var traversal = PageServerHeader(.open2, type: .pagemap, id: 0)
        traversal.dstID = "../../x\0".utf8.enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        fd = try connect(port)
        send(fd, [traversal])
        XCTAssertTrue(closedByServer(fd), "traversal"); close(fd)
        // An id past the limit (ids become file names: pagemap-ID.img).
        fd = try connect(port)
        send(fd, [PageServerHeader(.open2, type: .pagemap, id: 1 << 40)])
        XCTAssertTrue(closedByServer(fd), "huge id"); close(fd)
        // Pages that stop halfway: the session is dropped and leaves no file.
        fd = try connect(port)
        send(fd, [PageServerHeader(.open2, type: .pagemap, id: 7)])
        XCTAssertEqual(try TCP.readFull(fd, &answer, 1), 1)
        send(fd, [PageServerHeader(.addF, flags: 4, nrPages: 4, vaddr: 0x400000, type: .pagemap, id: 7)], payload: [UInt8](repeating: 1, count: 4096))
        close(fd)
        usleep(200_000)
        XCTAssertEqual(files(dir), [], "a broken session leaves nothing")
        XCTAssertEqual(files(root), ["img"], "nothing is written outside -D")
        XCTAssertEqual(kill(server, 0), 0, "the server keeps serving")

        // A well-behaved client still gets its images written: CRIU's exact sequence.
        fd = try connect(port)
        let page = (0..<3 * 4096).map { UInt8(truncatingIfNeeded: $0 / 4096 + 1) }
        send(fd, [PageServerHeader(.parent, type: .pagemap, id: 7)])
        var parent: Int32 = 9
        XCTAssertEqual(try TCP.readFull(fd, &parent, 4), 4); XCTAssertEqual(parent, 0)
        send(fd, [PageServerHeader(.open2, type: .pagemap, id: 7)])
        XCTAssertEqual(try TCP.readFull(fd, &answer, 1), 1); XCTAssertEqual(answer, 0)
        send(fd, [PageServerHeader(.addF, flags: 4, nrPages: 2, vaddr: 0x400000, type: .pagemap, id: 7)], payload: Array(page[0..<8192]))
        send(fd, [PageServerHeader(.addF, flags: 2, nrPages: 5, vaddr: 0x500000, type: .pagemap, id: 7)])  // lazy, not sent
        send(fd, [PageServerHeader(.add, nrPages: 1, vaddr: 0x600000, type: .pagemap, id: 7)], payload: Array(page[8192...]))
        send(fd, [PageServerHeader(.flush)])
        var status: Int32 = 9
        XCTAssertEqual(try TCP.readFull(fd, &status, 4), 4); XCTAssertEqual(status, 0)
        close(fd)
        XCTAssertEqual(try Subprocess.wait(server, timeout: 20).map(Subprocess.exitCode), 0, "the server ends after a completed session")
        let images = try ImageDirectory(path: dir)
        let map = try images.pageMap(pid: 7)
        // Numbered as CRIU's server numbers them (from 0x10001; the dropped sessions took some).
        XCTAssertGreaterThanOrEqual(map.pagesID, 0x10001)
        XCTAssertEqual(files(dir), ["pagemap-7.img", "pages-\(map.pagesID).img"])
        XCTAssertEqual(map.entries.map { [$0.vaddr, UInt64($0.nrPages), UInt64($0.flags.rawValue)] },
                       [[0x400000, 2, 4], [0x500000, 5, 2], [0x600000, 1, 4]])
        XCTAssertEqual(try images.pagesReader(id: map.pagesID).read(offset: 0, count: 3 * 4096), page)
        // crit (CRIU's own reader) decodes what the server wrote.
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/crit") {
            let log = h.dir + "/crit.log"
            let st = try Subprocess.run("/usr/bin/crit", ["decode", "-i", dir + "/pagemap-7.img"], log: log, timeout: 60)
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            XCTAssertEqual(Subprocess.exitCode(st), 0, text)
            XCTAssertTrue(text.contains("\"pages_id\": \(map.pagesID)"), text)
        }
    }

    /// In-parent pages must be in the server's parent snapshot: a range it lacks ends the session.
    func testInParentRangesAreCheckedAgainstTheParent() throws {
        let parent = try ImageDirectory(path: h.dir + "/srv/pre1", create: true)
        var inv = Img_InventoryEntry(); inv.imgVersion = 2
        try parent.write(.inventory, entry: inv)
        try parent.writePagemap(pid: 7, pagesID: 1, entries: [Img_PagemapEntry(vaddr: 0x400000, nrPages: 4, flags: [.present])])
        let (server, port) = try startServer(h.dir + "/srv/final", ["--prev-images-dir", "../pre1"])
        var fd = try connect(port)
        var answer: UInt8 = 9
        var has: Int32 = 9
        send(fd, [PageServerHeader(.parent, type: .pagemap, id: 7)])
        XCTAssertEqual(try TCP.readFull(fd, &has, 4), 4); XCTAssertEqual(has, 1)
        send(fd, [PageServerHeader(.open2, type: .pagemap, id: 7)])
        XCTAssertEqual(try TCP.readFull(fd, &answer, 1), 1); XCTAssertEqual(answer, 1, "the parent has pagemap-7")
        send(fd, [PageServerHeader(.addF, flags: 1, nrPages: 2, vaddr: 0x401000, type: .pagemap, id: 7),
                  PageServerHeader(.addF, flags: 1, nrPages: 2, vaddr: 0x403000, type: .pagemap, id: 7)])  // ends past the parent's
        XCTAssertTrue(closedByServer(fd)); close(fd)
        XCTAssertFalse(files(h.dir + "/srv/final").contains { $0.hasSuffix(".img") }, "\(files(h.dir + "/srv/final"))")
        // The same session with ranges the parent holds is written.
        fd = try connect(port)
        send(fd, [PageServerHeader(.open2, type: .pagemap, id: 7)])
        XCTAssertEqual(try TCP.readFull(fd, &answer, 1), 1)
        send(fd, [PageServerHeader(.addF, flags: 1, nrPages: 2, vaddr: 0x401000, type: .pagemap, id: 7),
                  PageServerHeader(.addF, flags: 4, nrPages: 1, vaddr: 0x403000, type: .pagemap, id: 7)], payload: [UInt8](repeating: 5, count: 4096))
        send(fd, [PageServerHeader(.flush)])
        var status: Int32 = 9
        XCTAssertEqual(try TCP.readFull(fd, &status, 4), 4); XCTAssertEqual(status, 0)
        close(fd)
        XCTAssertEqual(try Subprocess.wait(server, timeout: 20).map(Subprocess.exitCode), 0)
        let map = try ImageDirectory(path: h.dir + "/srv/final").pageMap(pid: 7)
        XCTAssertEqual(map.entries.map { [$0.vaddr, UInt64($0.nrPages), UInt64($0.flags.rawValue)] }, [[0x401000, 2, 1], [0x403000, 1, 4]])
    }

    /// -d: the port is printed before the server goes to the background, the pidfile names the
    /// daemon, and it ends after its session.
    func testDaemonWritesPidfileAndServes() throws {
        let dir = h.dir + "/img", pidfile = h.dir + "/ps.pid", out = h.dir + "/ps-d.out"
        let st = try Subprocess.run(h.bin + "/cryo", ["page-server", "-D", dir, "--port", "0", "-d", "--pidfile", pidfile, "-o", h.dir + "/ps-d.log"],
                                    log: out, timeout: 30)
        XCTAssertEqual(Subprocess.exitCode(st), 0)
        let text = try String(contentsOfFile: out, encoding: .utf8)
        let port = try XCTUnwrap(UInt16(text.trimmingCharacters(in: .whitespacesAndNewlines)), text)
        let pid = try XCTUnwrap(Int32(try String(contentsOfFile: pidfile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        servers.append(pid)
        XCTAssertEqual(kill(pid, 0), 0, "the daemon runs")
        let fd = try connect(port)
        send(fd, [PageServerHeader(.open2, type: .pagemap, id: 3)])
        var answer: UInt8 = 9
        XCTAssertEqual(try TCP.readFull(fd, &answer, 1), 1)
        send(fd, [PageServerHeader(.addF, flags: 4, nrPages: 1, vaddr: 0x1000, type: .pagemap, id: 3)], payload: [UInt8](repeating: 3, count: 4096))
        send(fd, [PageServerHeader(.flush)])
        var status: Int32 = 9
        XCTAssertEqual(try TCP.readFull(fd, &status, 4), 4); XCTAssertEqual(status, 0)
        close(fd)
        // We are the subreaper the daemon fell to.
        XCTAssertEqual(try Subprocess.wait(pid, timeout: 20).map(Subprocess.exitCode), 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/pagemap-3.img"))
    }

    /// CRIU before 4.2 (Debian 12's 3.17) sends 24-byte headers: the server tells from the
    /// first one and writes the same images.
    func testLegacyCriuHeadersAreUnderstood() throws {
        let dir = h.dir + "/img"
        let (server, port) = try startServer(dir)
        let fd = try connect(port)
        var b = PageServerHeader(.open2, type: .pagemap, id: 31).legacyBytes
        try TCP.writeFull(fd, b)
        var answer: UInt8 = 9
        XCTAssertEqual(try TCP.readFull(fd, &answer, 1), 1); XCTAssertEqual(answer, 0)
        let data = (0..<2 * 4096).map { UInt8(truncatingIfNeeded: $0 * 7) }
        b = PageServerHeader(.addF, flags: 4, nrPages: 2, vaddr: 0x7f0000000000, type: .pagemap, id: 31).legacyBytes + data
        b += PageServerHeader(.addF, flags: 2, nrPages: 3, vaddr: 0x7f0000010000, type: .pagemap, id: 31).legacyBytes
        b += PageServerHeader(.flush).legacyBytes
        try TCP.writeFull(fd, b)
        var status: Int32 = 9
        XCTAssertEqual(try TCP.readFull(fd, &status, 4), 4); XCTAssertEqual(status, 0)
        close(fd)
        XCTAssertEqual(try Subprocess.wait(server, timeout: 20).map(Subprocess.exitCode), 0)
        let images = try ImageDirectory(path: dir)
        let map = try images.pageMap(pid: 31)
        XCTAssertEqual(map.entries.map { [$0.vaddr, UInt64($0.nrPages), UInt64($0.flags.rawValue)] },
                       [[0x7f0000000000, 2, 4], [0x7f0000010000, 3, 2]])
        XCTAssertEqual(try images.pagesReader(id: map.pagesID).read(offset: 0, count: data.count), data)
    }

    // MARK: dumps through the server

    func testDumpThroughServerRestores() throws {
        let pid = try h.start("memhog00", args: ["16"])
        let srv = h.dir + "/srv"
        let (server, port) = try startServer(srv)
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", h.dir + "/local", "--page-server", "--port", "\(port)", "-v4"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try Subprocess.wait(server, timeout: 30).map(Subprocess.exitCode), 0)
        h.waitGone([pid])
        XCTAssertEqual(try h.pagesBytes(h.dir + "/local"), 0, "no pages stay local")
        XCTAssertGreaterThan(try h.pagesBytes(srv), 16 << 20)
        for f in files(h.dir + "/local") where !FileManager.default.fileExists(atPath: srv + "/" + f) {
            try FileManager.default.copyItem(atPath: h.dir + "/local/" + f, toPath: srv + "/" + f)
        }
        let (rc, rout) = try h.cryo(["restore", "-D", srv, "-d"])
        XCTAssertEqual(rc, 0, rout)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// The frozen task splicing its pages and cryo copying them out put the same bytes on the
    /// server's disk: two dumps of an idle process, one each way, give identical images there.
    func testSplicedAndCopiedPagesAreTheSame() throws {
        let pid = try h.start("memhog00", args: ["16"])
        // On one CPU only: the kernel writes the CPU a thread runs on into its rseq area
        // (glibc's, in the thread's TLS), which would differ between the two dumps otherwise.
        let (pinned, how) = try CRHarness.capture("/usr/bin/taskset", ["-a", "-p", "1", "\(pid)"])
        XCTAssertEqual(pinned, 0, how)
        usleep(300_000)  // it wakes on CPU 0 and the kernel updates its rseq cpu_id
        var dirs: [String] = []
        // Spliced by the task's loop (many pipes per wake-up), spliced one injected call per
        // pipeful, and copied.
        let pipesPerWake = SplicedPages.loopPipes
        defer { SplicedPages.loopPipes = pipesPerWake }
        for (splice, pipes) in [(true, 16), (true, 1), (false, 16)] {
            let srv = h.dir + "/srv-\(splice)-\(pipes)"
            let (server, port) = try startServer(srv)
            var req = DumpRequest(pid: pid, imagesDir: h.dir + "/local-\(splice)-\(pipes)")
            req.leave = .running
            req.pageServer = PageServerTarget(address: "127.0.0.1", port: port)
            req.splicePages = splice
            SplicedPages.loopPipes = pipes
            _ = try Dumper(req).run()
            XCTAssertEqual(try Subprocess.wait(server, timeout: 30).map(Subprocess.exitCode), 0)
            dirs.append(srv)
        }
        XCTAssertGreaterThan(try h.pagesBytes(dirs[0]), 16 << 20)
        for other in dirs.dropFirst() {
            XCTAssertEqual(files(dirs[0]), files(other))
            for f in files(dirs[0]) {
                let a = FileManager.default.contents(atPath: dirs[0] + "/" + f), b = FileManager.default.contents(atPath: other + "/" + f)
                XCTAssertTrue(a != nil && a == b, "\(f) differs between \(dirs[0]) and \(other)")
            }
        }
        XCTAssertEqual(kill(pid, 0), 0, "both dumps left it running")
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    func testIncrementalThroughServerSendsOnlyChangedPages() throws {
        let store = try TrackStore.makeSocket()
        defer { close(store) }
        let pid = try h.start("dirty00", args: ["32", "1"])
        let (s1, p1) = try startServer(h.dir + "/srv/pre1")
        var (code, out) = try h.cryo(["pre-dump", "-t", "\(pid)", "-D", h.dir + "/pre1", "--page-server", "--port", "\(p1)", "--track-store", "3"], passFd: store)
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try Subprocess.wait(s1, timeout: 30).map(Subprocess.exitCode), 0)
        let first = try h.pagesBytes(h.dir + "/srv/pre1")
        XCTAssertGreaterThan(first, 32 << 20)
        let (s2, p2) = try startServer(h.dir + "/srv/final", ["--prev-images-dir", "../pre1"])
        (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", h.dir + "/final", "--page-server", "--port", "\(p2)",
                                  "--track-mem", "--prev-images-dir", "../pre1", "--track-store", "3", "-v4"], passFd: store)
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try Subprocess.wait(s2, timeout: 30).map(Subprocess.exitCode), 0)
        h.waitGone([pid])
        // dirty00 rewrites a few pages of its 32 MiB: the in-parent rest never crossed the wire.
        let final = try h.pagesBytes(h.dir + "/srv/final")
        XCTAssertLessThan(final, first / 8, "final \(final) bytes vs first \(first)")
        let sent = out.split(separator: "\n").first { $0.contains("stored") && $0.contains("bytes of pages") }
        XCTAssertNotNil(sent, out)
        XCTAssertTrue(sent?.contains("stored \(final) bytes") ?? false, "the bytes sent are the bytes stored: \(sent ?? "")")
        // The server's chain plus the local images restore.
        for d in ["pre1", "final"] {
            for f in files(h.dir + "/" + d) where f != "parent" && !FileManager.default.fileExists(atPath: h.dir + "/srv/\(d)/" + f) {
                try FileManager.default.copyItem(atPath: h.dir + "/\(d)/" + f, toPath: h.dir + "/srv/\(d)/" + f)
            }
        }
        let (rc, rout) = try h.cryo(["restore", "-D", h.dir + "/srv/final", "-d"])
        XCTAssertEqual(rc, 0, rout)
        XCTAssertEqual(try h.stop(pid, name: "dirty00"), "PASS")
    }

    /// A server that takes some pages and hangs up: the dump fails, the tree runs on, and no
    /// image looks finished.
    func testConnectionDroppedMidDump() throws {
        let pid = try h.start("memhog00", args: ["64"])
        let (lfd, port) = try TCP.listen(address: "127.0.0.1", port: 0)
        defer { close(lfd) }
        let t = Thread {
            let c = accept(lfd, nil, nil)
            guard c >= 0 else { return }
            var got = 0
            var buf = [UInt8](repeating: 0, count: 1 << 16)
            var hdr = [UInt8](repeating: 0, count: 32)
            while got < 4 << 20 {
                if got == 0 || hdr[0] == 4 {
                    guard (try? TCP.readFull(c, &hdr, 32)) == 32 else { break }
                    if hdr[0] == 4 || hdr[0] == 5 { var z: Int32 = 0; _ = try? TCP.writeFull(c, &z, hdr[0] == 4 ? 1 : 4); got += 1; continue }
                }
                let n = recv(c, &buf, buf.count, 0)
                if n <= 0 { break }
                got += n
            }
            close(c)
        }
        t.start()
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", h.dir + "/d", "--page-server", "--port", "\(port)"])
        XCTAssertNotEqual(code, 0, out)
        XCTAssertTrue(out.contains("page server 127.0.0.1:\(port)"), out)
        XCTAssertEqual(kill(pid, 0), 0, "the tree runs on")
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/d/inventory.img"))
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// The real server, with a client that dies mid-pages: no image appears.
    func testServerKeepsNothingOfADroppedDump() throws {
        let pid = try h.start("memhog00", args: ["64"])
        let srv = h.dir + "/srv"
        let (server, port) = try startServer(srv)
        // The dump is killed while it streams its pages.
        let log = h.dir + "/dump.log"
        let dumper = try Subprocess.spawn(h.bin + "/cryo", ["dump", "-t", "\(pid)", "-D", h.dir + "/d", "--page-server", "--port", "\(port)", "-R"], output: log)
        for _ in 0..<2000 {
            if ((try? FileManager.default.contentsOfDirectory(atPath: srv)) ?? []).contains(where: { $0.hasSuffix(".tmp") }) { break }
            usleep(1000)
        }
        Subprocess.kill9(dumper)
        usleep(300_000)
        XCTAssertFalse(files(srv).contains { $0.hasPrefix("pagemap-") || ($0.hasPrefix("pages-") && $0.hasSuffix(".img")) }, "\(files(srv))")
        XCTAssertEqual(kill(server, 0), 0, "the server keeps listening")
        // A killed dumper may leave the tree stopped under ptrace's exit: it must still run.
        kill(pid, SIGCONT)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// Splicing is the default: a cryo killed (SIGKILL, by pid) at several moments of a
    /// 256 MiB transfer leaves the task running, untraced, with its memory intact (memhog00
    /// checks every page when it stops).
    func testSplicedDumpKilledMidTransferLeavesTheTreeRunning() throws {
        let pid = try h.start("memhog00", args: ["256"])
        var midTransfer = 0
        for (round, mib) in [4, 48, 120, 200, 1].enumerated() {
            let srv = h.dir + "/srv\(round)"
            let (server, port) = try startServer(srv)
            let dumper = try Subprocess.spawn(h.bin + "/cryo", ["dump", "-t", "\(pid)", "-D", h.dir + "/d\(round)", "--page-server", "--port", "\(port)", "-R"],
                                              output: h.dir + "/dump\(round).log")
            var received = 0
            var st: Int32?
            for _ in 0..<20000 {
                received = files(srv).filter { $0.hasSuffix(".tmp") }
                    .reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: srv + "/" + $1)[.size] as? Int) ?? 0) }
                if received >= mib << 20 { break }
                st = try Subprocess.wait(dumper, timeout: 0)
                if st != nil { break }
                usleep(500)
            }
            if st == nil {
                Glibc.kill(dumper, SIGKILL)
                st = try Subprocess.wait(dumper, timeout: 30)
                if received > 0 && received < 256 << 20 { midTransfer += 1 }
            }
            usleep(200_000)
            let status = try ProcReader().status(pid: pid)
            if status.state == "Z" {
                var ws: Int32 = 0
                _ = waitpid(pid, &ws, WNOHANG)
                XCTFail("round \(round), cryo killed after \(received) bytes: memhog00 ended (wait status 0x\(String(ws, radix: 16)))")
                break
            }
            XCTAssertEqual(status.tracerPid, 0, "round \(round)")
            kill(pid, SIGCONT)
            XCTAssertFalse(files(srv).contains { $0.hasPrefix("pagemap-") }, "round \(round): \(files(srv))")
            Subprocess.kill9(server)
            servers.removeAll { $0 == server }
        }
        XCTAssertGreaterThanOrEqual(midTransfer, 3, "cryo was killed mid-transfer in too few rounds to tell")
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    // MARK: post-copy serving

    func testLazyServerAnswersGet() throws {
        let pid = try h.start("memhog00", args: ["4"])
        let d = h.dir + "/img"
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", d, "-R"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
        let images = try ImageDirectory(path: d)
        let map = try images.pageMap(pid: Int(pid))
        let e = try XCTUnwrap(map.entries.last { $0.fileOffset != nil && $0.nrPages >= 2 })
        let (server, port) = try startServer(d, ["--lazy-pages"])
        let fd = try connect(port)
        // Two pages from the middle of an entry, then one past its end.
        let at = e.vaddr + 4096
        send(fd, [PageServerHeader.get(pid: UInt64(pid), vaddr: at, nrPages: 1000)])
        var hb = [UInt8](repeating: 0, count: 32)
        XCTAssertEqual(try TCP.readFull(fd, &hb, 32), 32)
        let reply = try XCTUnwrap(PageServerHeader(bytes: hb))
        XCTAssertEqual(reply.command, .addF)
        XCTAssertEqual(reply.flags, 4)
        XCTAssertEqual(reply.vaddr, at)
        XCTAssertEqual(reply.dstID, UInt64(pid))
        XCTAssertEqual(reply.nrPages, min(1000, UInt64(e.nrPages) - 1))
        var data = [UInt8](repeating: 0, count: Int(reply.nrPages) * 4096)
        XCTAssertEqual(try TCP.readFull(fd, &data, data.count), data.count)
        XCTAssertEqual(data, try images.pagesReader(id: map.pagesID).read(offset: e.fileOffset! + 4096, count: data.count))
        send(fd, [PageServerHeader.get(pid: UInt64(pid), vaddr: 0x1000, nrPages: 1)])
        XCTAssertEqual(try TCP.readFull(fd, &hb, 32), 32)
        XCTAssertEqual(PageServerHeader(bytes: hb)?.nrPages, 0)
        send(fd, [PageServerHeader(.flush)])
        var status: Int32 = 9
        XCTAssertEqual(try TCP.readFull(fd, &status, 4), 4)
        XCTAssertEqual(status, 0)
        close(fd)
        XCTAssertEqual(try Subprocess.wait(server, timeout: 20).map(Subprocess.exitCode), 0)
    }
}
