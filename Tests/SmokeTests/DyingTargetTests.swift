import CKernel
import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// A dump whose target dies (SIGKILL reaches a frozen task) fails with an error naming the
/// pid, in plain and page-server modes: never a crash of cryo (it once trapped on a force
/// unwrap), never images of a process that is gone.
extension PageServerTests {
    /// Bytes of pages received so far (pages files still under their temporary names).
    func pagesBytes(in dir: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("pages-") && $0.hasSuffix(".tmp") }
            .reduce(0) { $0 + ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + $1)[.size] as? Int) ?? 0) }
    }

    /// The root already a zombie (we, its subreaper, have not reaped it): nothing to dump.
    func testZombieRootIsRefusedNamingIt() throws {
        let pid = try h.start("memhog00", args: ["4"])
        kill(pid, SIGKILL)
        var polls = 0
        while (try? ProcReader().stat(pid: pid))?.isZombie != true && polls < 2000 { usleep(1000); polls += 1 }
        for mode in ["plain", "page-server"] {
            var extra: [String] = []
            if mode == "page-server" {
                let port = try startServer(h.dir + "/zsrv").port
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
            // h.start reads the pidfile: the last round's must not be taken for this one's.
            try? FileManager.default.removeItem(atPath: h.dir + "/memhog00/pid")
            let pid = try h.start("memhog00", args: ["256"])
            let dir = h.dir + "/d-" + mode, srv = h.dir + "/srv-" + mode
            var args = ["dump", "-t", "\(pid)", "-D", dir, "-v4"]
            // Pages are written to *.tmp names on both sides until the images are complete.
            var watch = dir
            var server: Int32?
            if mode == "page-server" {
                let (s, port) = try startServer(srv)
                server = s
                args += ["--page-server", "--port", "\(port)"]
                watch = srv
            }
            let log = h.dir + "/dump-\(mode).log"
            let dumper = try Subprocess.spawn(h.bin + "/cryo", args, output: log)
            var st: Int32?
            var polls = 0
            while st == nil && pagesBytes(in: watch) < 16 << 20 && polls < 20000 {
                st = try Subprocess.wait(dumper, timeout: 0)
                usleep(500)
                polls += 1
            }
            XCTAssertNil(st, "\(mode): the dump ended before the target could be killed mid-transfer")
            kill(pid, SIGKILL)
            if st == nil { st = try Subprocess.wait(dumper, timeout: 60) }
            let out = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard let status = st else { XCTFail("\(mode): the dump did not end: \(out)"); continue }
            XCTAssertEqual(Subprocess.describe(status), "exit 1", "\(mode): \(out.suffix(3000))")
            XCTAssertTrue(["pid", "tid", "process"].contains { out.contains("cryo dump: \($0) \(pid)") }, "\(mode): the error names the pid: \(out.suffix(3000))")
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/inventory.img"), mode)
            if let server { Subprocess.kill9(server); servers.removeAll { $0 == server } }
            h.waitGone([pid])
        }
    }
}
