import CKernel
import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// Lazy restore (post-copy) through the real cryo binary: memory served by `cryo lazy-pages`
/// comes back exactly, make-lazy strips what it should, and a page server that goes away
/// mid-restore gets the restored tree killed with a clear error, never left running.
final class LazyPagesTests: XCTestCase {
    var h: CRHarness!

    override func setUpWithError() throws { h = try CRHarness.make("LazyPagesTests") }
    override func tearDown() { h?.remove() }

    /// `cryo lazy-pages ARGS` in the background, output to a file; returns (pid, output path).
    func daemon(_ args: [String]) throws -> (Int32, String) {
        let out = h.dir + "/lazy-\(UUID().uuidString).out"
        return (try Subprocess.spawn(h.bin + "/cryo", ["lazy-pages"] + args, output: out), out)
    }

    func dumpAndWait(_ pid: Int32, _ images: String) throws {
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", images])
        XCTAssertEqual(code, 0, out)
        h.waitGone([pid])
    }

    func testLazyRestoreOfAProcessWritingItsMissingPages() throws {
        let pid = try h.start("lazy01", args: ["32", "512"])
        let images = h.dir + "/img"
        try dumpAndWait(pid, images)
        let stats = h.dir + "/stats.json"
        let (d, dout) = try daemon(["-D", images, "--stats-file", stats])
        let (code, out) = try h.cryo(["restore", "-D", images, "-d", "--lazy-pages"])
        XCTAssertEqual(code, 0, out)
        let st = try XCTUnwrap(try Subprocess.wait(d, timeout: 60), "lazy-pages still running")
        XCTAssertEqual(Subprocess.exitCode(st), 0, (try? String(contentsOfFile: dout, encoding: .utf8)) ?? "")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stats))) as? [String: Any])
        // 32 MiB of pattern plus its table: every page came from the daemon, none was dropped.
        let served = (json["fault_pages"] as? Int ?? 0) + (json["background_pages"] as? Int ?? 0)
        XCTAssertGreaterThan(served, 8192, "\(json)")
        XCTAssertEqual(json["dropped"] as? Int, 0, "\(json)")
        XCTAssertEqual(try h.stop(pid, name: "lazy01"), "PASS")
    }

    /// lazy02 makes one page per MiB read-only every millisecond (mprotect splits its VMA and
    /// sends no event), then reads it: faults served with the pages after them, and background
    /// MiBs, cross VMA boundaries the daemon never heard of. They must go in page by page.
    func testLazyRestoreOfAProcessSplittingItsVMAsWithoutEvents() throws {
        let pid = try h.start("lazy02", args: ["64"])
        let images = h.dir + "/img"
        try dumpAndWait(pid, images)
        let stats = h.dir + "/stats.json"
        let (d, dout) = try daemon(["-D", images, "--stats-file", stats])
        let (code, out) = try h.cryo(["restore", "-D", images, "-d", "--lazy-pages"])
        XCTAssertEqual(code, 0, out)
        let st = try XCTUnwrap(try Subprocess.wait(d, timeout: 60), "lazy-pages still running")
        XCTAssertEqual(Subprocess.exitCode(st), 0, (try? String(contentsOfFile: dout, encoding: .utf8)) ?? "")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: stats))) as? [String: Any])
        let served = (json["fault_pages"] as? Int ?? 0) + (json["background_pages"] as? Int ?? 0)
        XCTAssertGreaterThan(served, 16384, "\(json)")
        XCTAssertEqual(json["dropped"] as? Int, 0, "\(json)")
        XCTAssertEqual(try h.stop(pid, name: "lazy02"), "PASS")
    }

    func testMakeLazyStripsAnonymousMemoryAndRestoresWithADaemonOnTheOriginal() throws {
        let pid = try h.start("memhog00", args: ["64"])
        let full = h.dir + "/full", lazy = h.dir + "/lazy"
        try dumpAndWait(pid, full)
        var (code, out) = try h.cryo(["image", "make-lazy", full, lazy])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("\(full) ") && out.contains("bytes ->"), out)
        let inPages = try h.pagesBytes(full), outPages = try h.pagesBytes(lazy)
        XCTAssertGreaterThan(inPages, 64 << 20)
        XCTAssertLessThan(outPages, 1 << 20, "the 64 MiB of anonymous memory must be gone from the copy")
        // Without a lazy-pages daemon the copy cannot be restored, and says why.
        (code, out) = try h.cryo(["restore", "-D", lazy, "-d"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("lazy"), out)
        XCTAssertNotEqual(kill(pid, 0), 0, "a failed restore leaves no process")
        h.waitGone([pid])
        // With cryo lazy-pages reading the original, the copy comes back whole.
        let (d, dout) = try daemon(["-D", full, "-W", lazy])
        (code, out) = try h.cryo(["restore", "-D", lazy, "-d", "--lazy-pages"])
        XCTAssertEqual(code, 0, out)
        let st = try XCTUnwrap(try Subprocess.wait(d, timeout: 60), "lazy-pages still running")
        XCTAssertEqual(Subprocess.exitCode(st), 0, (try? String(contentsOfFile: dout, encoding: .utf8)) ?? "")
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// A page server that answers `answers` GETs from the images, then drops the connection.
    final class FlakyServer: @unchecked Sendable {
        let fd: Int32
        let port: UInt16
        let store: LazyPageStore
        let answers: Int
        var thread: Thread?

        init(images: String, answers: Int) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_addr.s_addr = inet_addr("127.0.0.1")
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
            listen(fd, 1)
            _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
            port = UInt16(bigEndian: a.sin_port)
            store = LazyPageStore(images: try ImageDirectory(path: images))
            self.answers = answers
            thread = Thread { [self] in serve() }
            thread!.start()
        }

        func serve() {
            let c = accept(fd, nil, nil)
            guard c >= 0 else { return }
            defer { close(c) }
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 4096 * 4096, alignment: 4096)
            defer { buf.deallocate() }
            for _ in 0..<answers {
                var raw = [UInt8](repeating: 0, count: PageServerHeader.size)
                guard recv(c, &raw, raw.count, Int32(MSG_WAITALL)) == raw.count, let h = PageServerHeader(bytes: raw), h.command == .get else { return }
                let n = (try? store.read(pid: Int(h.dstID), vaddr: h.vaddr, maxPages: min(4096, Int(h.nrPages)), into: buf)) ?? 0
                let reply = PageServerHeader(rawCmd: PageServerCommand.addF.rawValue | (4 << 16), nrPages: UInt64(n), vaddr: h.vaddr, dstID: h.dstID).bytes
                _ = send(c, reply, reply.count, Int32(MSG_NOSIGNAL))
                var off = 0
                while off < n * 4096 { let k = send(c, buf + off, n * 4096 - off, Int32(MSG_NOSIGNAL)); if k <= 0 { return }; off += k }
            }
        }
        deinit { close(fd) }
    }

    func testConnectionDroppedMidLazyRestoreKillsTheTree() throws {
        let pid = try h.start("memhog00", args: ["64"])
        let full = h.dir + "/full", lazy = h.dir + "/lazy"
        try dumpAndWait(pid, full)
        var (code, out) = try h.cryo(["image", "make-lazy", full, lazy])
        XCTAssertEqual(code, 0, out)
        // 64 MiB take 64 background GETs at least; the server stops answering after 5.
        let server = try FlakyServer(images: full, answers: 5)
        let (d, dout) = try daemon(["--page-server", "--address", "127.0.0.1", "--port", "\(server.port)", "-D", lazy])
        (code, out) = try h.cryo(["restore", "-D", lazy, "-d", "--lazy-pages"])
        XCTAssertEqual(code, 0, out)
        let st = try XCTUnwrap(try Subprocess.wait(d, timeout: 60), "lazy-pages still running")
        let dlog = (try? String(contentsOfFile: dout, encoding: .utf8)) ?? ""
        XCTAssertNotEqual(Subprocess.exitCode(st), 0, dlog)
        XCTAssertTrue(dlog.contains("killed the restored tree") && dlog.contains("\(pid)") && dlog.contains("closed the connection"), dlog)
        // Killed, not left running on missing memory (we are its subreaper: reaped here).
        h.waitGone([pid])
        XCTAssertNotEqual(kill(pid, 0), 0, "the restored process must not survive its page server")
        XCTAssertEqual((try? String(contentsOfFile: h.dir + "/memhog00/out", encoding: .utf8)) ?? "", "", "it never got to a verdict")
    }
}
