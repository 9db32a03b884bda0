import Foundation
import Glibc
import XCTest
import ZDTMCore
import Engine
import CKernel

/// A restore that cannot succeed must say why (which pid, file or offset) and leave nothing.
final class RestoreErrorsTests: XCTestCase {
    var dir = ""
    var bin: String { Locations.selfDir() }

    override func setUpWithError() throws {
        guard getuid() == 0 else {
            print("RestoreErrorsTests: skipped, dump and restore need root")
            throw XCTSkip("needs root")
        }
        dir = try Locations.makeRunDir()
        _ = ck_subreaper()
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func ck_subreaper() -> Int32 { CKernel.ck_prctl(36, 1, 0, 0, 0) }

    func start(_ name: String) throws -> Int32 { try CRHarness(dir: dir).start(name) }

    func cryo(_ args: [String]) throws -> (Int32, String) { try CRHarness(dir: dir).cryo(args, timeout: 60) }

    func stop(_ pid: Int32) throws {
        kill(pid, SIGTERM)
        _ = try Subprocess.wait(pid, timeout: 30)
    }

    func testPidTakenCorruptImageAndChangedFile() throws {
        let pid = try start("maps01")
        let images = dir + "/img"
        var (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", images, "--leave-running"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(kill(pid, 0), 0, "--leave-running keeps the process")

        // The pid is still in use by the original.
        (code, out) = try cryo(["restore", "-D", images, "-d"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("pid \(pid) is taken"), out)
        try stop(pid)
        XCTAssertEqual(try String(contentsOfFile: dir + "/maps01/out", encoding: .utf8), "PASS\n", "a dump with --leave-running must not disturb the process")

        // A corrupt core image: named, with the offset, and nothing created.
        let bad = dir + "/bad"
        try FileManager.default.copyItem(atPath: images, toPath: bad)
        let core = bad + "/core-\(pid).img"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: core)))
        bytes[5] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: core))
        (code, out) = try cryo(["restore", "-D", bad, "-d"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("core-\(pid).img") && out.contains("offset 4"), out)
        XCTAssertNotEqual(kill(pid, 0), 0, "a failed restore leaves no process")

        // The mapped file changed size since the dump.
        let data = dir + "/maps01/maps01.data"
        let fd = open(data, O_WRONLY | O_APPEND)
        _ = write(fd, "x", 1)
        close(fd)
        (code, out) = try cryo(["restore", "-D", images, "-d"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("maps01.data") && out.contains("size changed"), out)
        XCTAssertNotEqual(kill(pid, 0), 0, "a failed restore leaves no process")
    }

    /// Hostile images folders: each is refused before any process exists, naming the file.
    func testHostileImagesFoldersAreRefusedBeforeAnythingIsCreated() throws {
        let pid = try start("sparse00")
        let images = dir + "/img"
        var (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", images])
        XCTAssertEqual(code, 0, out)
        CRHarness(dir: dir).waitGone([pid])
        let d = try ImageDirectory(path: images)
        let pm = try d.readPagemap(pid: pid)
        let data = pm.entries.filter(\.hasData)
        XCTAssertGreaterThanOrEqual(data.count, 2, "sparse00 has several runs of pages")
        func variant(_ name: String, _ damage: (ImageDirectory) throws -> Void) throws -> String {
            let v = dir + "/" + name
            try? FileManager.default.removeItem(atPath: v)
            try FileManager.default.copyItem(atPath: images, toPath: v)
            try damage(try ImageDirectory(path: v))
            let (c, o) = try cryo(["restore", "-D", v, "-d"])
            XCTAssertNotEqual(c, 0, "\(name): restore succeeded")
            XCTAssertNotEqual(kill(pid, 0), 0, "\(name): a refused restore created pid \(pid)")
            return o
        }
        // Two entries over the same pages.
        out = try variant("overlap") { v in
            var e = pm.entries
            e.insert(Img_PagemapEntry(vaddr: data[0].vaddr, nrPages: data[0].nrPages, flags: [.present]), at: 1)
            try v.writePagemap(pid: pid, pagesID: pm.pagesID, entries: e)
        }
        XCTAssertTrue(out.contains("pagemap-\(pid).img") && out.contains("overlaps"), out)
        // A count past anything real: more pages than the address space holds.
        out = try variant("huge") { v in
            var e = pm.entries
            e[e.count - 1] = Img_PagemapEntry(vaddr: e[e.count - 1].vaddr, nrPages: UInt32.max, flags: [.present])
            try v.writePagemap(pid: pid, pagesID: pm.pagesID, entries: e)
        }
        XCTAssertTrue(out.contains("pagemap-\(pid).img"), out)
        // Pages beyond the end of the pages file.
        out = try variant("short") { v in
            let f = v.filePath(.pages, Int(pm.pagesID))
            XCTAssertEqual(truncate(f, 4096), 0)
        }
        XCTAssertTrue(out.contains("pages-\(pm.pagesID).img") && out.contains("the file has 4096"), out)
        // A parent chain that loops back on itself, and one that leaves for a folder of no images.
        func inParent(_ v: ImageDirectory, parent: String) throws {
            let i = try XCTUnwrap(pm.entries.firstIndex(where: \.hasData))
            var e = pm.entries
            e[i] = Img_PagemapEntry(vaddr: e[i].vaddr, nrPages: e[i].nrPages, flags: [.parent])
            try v.writePagemap(pid: pid, pagesID: pm.pagesID, entries: e)
            // The first data entry's bytes lead the pages file; they are the parent's now.
            let f = v.filePath(.pages, Int(pm.pagesID))
            let bytes = try Data(contentsOf: URL(fileURLWithPath: f))
            try bytes.dropFirst(Int(e[i].nrPages) * 4096).write(to: URL(fileURLWithPath: f))
            try v.setParent(relativePath: parent)
        }
        out = try variant("loop") { try inParent($0, parent: "../loop") }
        XCTAssertTrue(out.contains("loop"), out)
        out = try variant("escape") { try inParent($0, parent: "../../../../../../../../etc") }
        XCTAssertTrue(out.contains("parent") && out.contains("inventory"), out)
        // The untouched images still restore: the refusals were about the damage.
        (code, out) = try cryo(["restore", "-D", images, "-d"])
        XCTAssertEqual(code, 0, out)
        try stop(pid)
        XCTAssertEqual(try String(contentsOfFile: dir + "/sparse00/out", encoding: .utf8), "PASS\n")
    }

    /// Runs python3 code that writes `ready` when set up, and waits for it.
    func python(_ code: String, in work: String) throws -> Process {
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", code]
        p.currentDirectoryURL = URL(fileURLWithPath: work)
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Until written, not only created: the callers read what it says.
        for _ in 0..<300 where ((try? String(contentsOfFile: work + "/ready", encoding: .utf8)) ?? "").isEmpty { usleep(20_000) }
        XCTAssertEqual(access(work + "/ready", F_OK), 0, "python3 did not get ready")
        return p
    }

    /// A dump that fails must name what it could not dump, leave the process running, not
    /// stopped nor traced, and remove its partial images.
    func assertDumpFails(_ p: Process, work: String, saying words: [String], options: [String] = []) throws {
        let (code, out) = try cryo(["dump", "-t", "\(p.processIdentifier)", "-D", work + "/img"] + options)
        XCTAssertNotEqual(code, 0)
        for w in words { XCTAssertTrue(out.contains(w), "expected '\(w)' in: \(out)") }
        XCTAssertTrue(p.isRunning, "a failed dump must leave the process running")
        // Sleeping, or running for a moment on a loaded machine: anything but stopped or traced.
        let state = try ProcReader().stat(pid: p.processIdentifier).state
        XCTAssertTrue(state == "S" || state == "R", "not stopped or traced (state \(state))")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: work + "/img")) ?? []
        XCTAssertEqual(left.filter { $0.hasSuffix(".img") }, [], "a failed dump removes its partial images")
    }

    func testFailedDumpLeavesProcessRunning() throws {
        // A UDP socket with a datagram queued is refused, naming it (its source could not
        // send it again).
        let work = dir + "/udp"
        let p = try python("""
            import socket, time
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
            v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); v.sendto(b"queued", u.getsockname())
            time.sleep(0.2)
            open("ready", "w").write(str(u.fileno()))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (socket:[", "datagrams in its receive queue"])
    }

    func testFailedDumpTakesTcpConnectionsOutOfRepair() throws {
        // Both ends of a connection are taken in repair mode, then the dump fails on the
        // SOCK_PACKET socket opened after them: the connection must carry on, unread data included.
        let work = dir + "/tcprepair"
        let p = try python("""
            import socket, time, os
            l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
            c = socket.create_connection(l.getsockname()); s, _ = l.accept()
            c.sendall(b"x" * 100000)
            n = socket.socket(socket.AF_PACKET, 10, 0)  # SOCK_PACKET, which cryo refuses
            open("ready", "w").write("1")
            while not os.path.exists("go"): time.sleep(0.01)
            c.sendall(b"y" * 10); s.sendall(b"z" * 5)
            d = b""
            while len(d) < 100010: d += s.recv(65536)
            e = c.recv(5, socket.MSG_WAITALL)
            open("result", "w").write("OK" if d == b"x" * 100000 + b"y" * 10 and e == b"z" * 5 else "BAD")
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        try assertDumpFails(p, work: work, saying: ["a SOCK_PACKET socket"])
        FileManager.default.createFile(atPath: work + "/go", contents: nil)
        for _ in 0..<500 where p.isRunning { usleep(20_000) }
        XCTAssertEqual(try? String(contentsOfFile: work + "/result", encoding: .utf8), "OK", "the connection stopped working after a failed dump")
    }

    func testTcpRestoreOntoATakenPortLeavesNothing() throws {
        let pid = try start("tcp01")
        let images = dir + "/tcpimg"
        var (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", images])
        XCTAssertEqual(code, 0, out)
        for _ in 0..<2000 where kill(pid, 0) == 0 {
            var st: Int32 = 0
            _ = waitpid(pid, &st, WNOHANG)
            usleep(1000)
        }
        let d = try ImageDirectory(path: images)
        let listener = try XCTUnwrap(try d.read(.files, as: Img_FileEntry.self).first { $0.hasIsk && $0.isk.state == 10 })
        let port = UInt16(listener.isk.srcPort)
        // Someone else listens on the port meanwhile.
        func listenOn(_ port: UInt16) -> Int32 {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
            let ok = withUnsafePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 } } && listen(s, 1) == 0
            if !ok { close(s); return -1 }
            return s
        }
        let other = listenOn(port)
        XCTAssertGreaterThanOrEqual(other, 0, "port \(port) should be free after the dump")
        (code, out) = try cryo(["restore", "-D", images, "-d"])
        close(other)
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("TCP socket") && out.contains("bind(127.0.0.1:\(port))") && out.contains("Address already in use"), out)
        for _ in 0..<3000 where kill(pid, 0) == 0 {
            var st: Int32 = 0
            _ = waitpid(pid, &st, WNOHANG)
            usleep(1000)
        }
        XCTAssertNotEqual(kill(pid, 0), 0, "a failed restore leaves no process")
        // Nor any socket holding the port: it can be listened on again, without SO_REUSEADDR.
        let again = listenOn(port)
        XCTAssertGreaterThanOrEqual(again, 0, "port \(port) is still held after the failed restore")
        if again >= 0 { close(again) }
    }

    func testBothEndsOfAPipeSharedOutsideAreRefused() throws {
        // sleep's stdin and stdout are the two ends of one pipe that this test holds too: a
        // pipe shared outside comes back as the caller's fd (--inherit-fd, InheritFdTests),
        // and one fd cannot stand for both ends.
        let work = dir + "/pipe"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sleep")
        p.arguments = ["30"]
        let pipe = Pipe()
        p.standardInput = pipe.fileHandleForReading
        p.standardOutput = pipe.fileHandleForWriting
        p.standardError = FileHandle.nullDevice
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        try assertDumpFails(p, work: work, saying: ["fd 0 (pipe:[", "shared with pid \(getpid())", "holds both its ends"])
    }

    func testUnsupportedFdsInFlightAreRefusedAndLeftQueued() throws {
        // A unix socket with an fd in flight (SCM_RIGHTS) of a kind cryo cannot send again
        // (an eventfd, closed by its sender): refused, naming the socket's fd and the kind, and
        // the message, fd included, is still queued for the process afterwards.
        let work = dir + "/rights"
        let p = try python("""
            import socket, array, time, os
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            e = os.eventfd(3)
            a.sendmsg([b"fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [e]))])
            os.close(e)
            open("ready", "w").write(str(b.fileno()))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try XCTUnwrap(Int32(try String(contentsOfFile: work + "/ready", encoding: .utf8)))
        try assertDumpFails(p, work: work, saying: ["fd \(fd)", "eventfd in flight", "SCM_RIGHTS"])
        let pidfd = try Sys.pidfdOpen(p.processIdentifier)
        defer { close(pidfd) }
        let sock = try Sys.pidfdGetfd(pidfd: pidfd, fd: fd)
        defer { close(sock) }
        var fds: [Int32] = [-1]
        XCTAssertEqual(ck_recv_fds(sock, &fds, 1), 1, "the message and its fd are still queued")
        if fds[0] >= 0 { close(fds[0]) }
    }
}
