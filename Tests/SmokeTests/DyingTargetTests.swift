import CKernel
import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// A dump whose target dies (SIGKILL reaches a frozen task) fails with an error naming the
/// pid, in plain and page-server modes: never a crash of cryo (it once trapped on a force
/// unwrap), never images of a process that is gone.
final class DyingTargetTests: XCTestCase {
    var h: CRHarness!
    var servers: [Int32] = []

    override func setUpWithError() throws { h = try CRHarness.make(name) }

    override func tearDown() {
        for s in servers { Subprocess.kill9(s) }
        h?.remove()
    }

    /// `cryo page-server -D dir --port 0`; its pid and port.
    func startServer(_ dir: String) throws -> (Int32, UInt16) {
        let out = h.dir + "/ps-\(UUID().uuidString).log"
        let s = try Subprocess.spawn(h.bin + "/cryo", ["page-server", "-D", dir, "--port", "0"], output: out)
        servers.append(s)
        for _ in 0..<3000 {
            if let port = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").first.flatMap({ UInt16($0) }) { return (s, port) }
            usleep(10_000)
        }
        XCTFail("page server printed no port")
        throw XCTSkip("no server")
    }

    func bytes(in dir: String, suffix: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("pages-") && $0.hasSuffix(suffix) }
            .reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + $1)[.size] as? Int) ?? 0) }
    }

    /// The root already a zombie (we, its subreaper, have not reaped it): nothing to dump.
    func testZombieRootIsRefusedNamingIt() throws {
        let pid = try h.start("memhog00", args: ["4"])
        kill(pid, SIGKILL)
        for _ in 0..<2000 where (try? ProcReader().stat(pid: pid))?.isZombie != true { usleep(1000) }
        for mode in ["plain", "page-server"] {
            var extra: [String] = []
            if mode == "page-server" {
                let port = try startServer(h.dir + "/zsrv").1
                extra = ["--page-server", "--port", "\(port)"]
            }
            let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", h.dir + "/z"] + extra)
            XCTAssertEqual(code, 1, out)
            XCTAssertTrue(out.contains("process \(pid) exited before it could be frozen"), out)
            XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/z/inventory.img"))
        }
        h.waitGone([pid])
    }

    /// The target killed while its pages travel, to a folder and to a page server.
    func testTargetKilledMidDumpFailsNamingIt() throws {
        for mode in ["plain", "page-server"] {
            let pid = try h.start("memhog00", args: ["256"])
            let dir = h.dir + "/d-" + mode, srv = h.dir + "/srv-" + mode
            var args = ["dump", "-t", "\(pid)", "-D", dir, "-v4"]
            var watch = dir, suffix = ".img"
            var server: Int32?
            if mode == "page-server" {
                let (s, port) = try startServer(srv)
                server = s
                args += ["--page-server", "--port", "\(port)"]
                watch = srv; suffix = ".tmp"
            }
            let log = h.dir + "/dump-\(mode).log"
            let dumper = try Subprocess.spawn(h.bin + "/cryo", args, output: log)
            var st: Int32?
            for _ in 0..<20000 where st == nil && bytes(in: watch, suffix: suffix) < 16 << 20 {
                st = try Subprocess.wait(dumper, timeout: 0)
                usleep(500)
            }
            kill(pid, SIGKILL)
            if st == nil { st = try Subprocess.wait(dumper, timeout: 60) }
            let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard let status = st else { XCTFail("\(mode): the dump did not end: \(out)"); continue }
            XCTAssertEqual(Subprocess.describe(status), "exit 1", "\(mode): \(out.suffix(3000))")
            XCTAssertTrue(out.contains("pid \(pid)"), "\(mode): the error names the pid: \(out.suffix(3000))")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/inventory.img"), mode)
            if let server { Subprocess.kill9(server); servers.removeAll { $0 == server } }
            h.waitGone([pid])
        }
    }
}
