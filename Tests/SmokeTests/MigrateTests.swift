import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// `cryo migrate` to `cryo migrate-receive` between two network namespaces this test makes,
/// joined by a veth pair (10.232.1.0/24); both are deleted after. The workload stays in the
/// host's pid namespace, so the restore on the "destination" takes the same pid back.
final class MigrateTests: XCTestCase {
    var h: CRHarness!
    var spaces: [String] = []
    var daemons: [Int32] = []
    let dst = "10.232.1.1", src = "10.232.1.2"

    override func setUpWithError() throws {
        h = try CRHarness.make("MigrateTests")
        guard FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip"), FileManager.default.isExecutableFile(atPath: "/usr/bin/nsenter") else {
            print("MigrateTests: skipped, needs ip and nsenter")
            throw XCTSkip("needs ip and nsenter")
        }
        let tag = "zdtm-mig-\(getpid())-\(UInt16.random(in: 0...UInt16.max))"
        let s = tag + "-s", c = tag + "-c"
        for ns in [s, c] { try ip(["netns", "add", ns]); spaces.append(ns) }
        try ip(["-n", s, "link", "add", "mg0", "type", "veth", "peer", "name", "mg1", "netns", c])
        try ip(["-n", s, "addr", "add", dst + "/24", "dev", "mg0"])
        try ip(["-n", c, "addr", "add", src + "/24", "dev", "mg1"])
        for (ns, dev) in [(s, "mg0"), (c, "mg1")] { try ip(["-n", ns, "link", "set", "lo", "up"]); try ip(["-n", ns, "link", "set", dev, "up"]) }
    }

    override func tearDown() {
        for p in daemons { Subprocess.kill9(p) }
        for ns in spaces { try? ip(["netns", "del", ns]) }
        h?.remove()
    }

    func ip(_ args: [String]) throws {
        let (rc, out) = try CRHarness.capture("/usr/sbin/ip", args)
        guard rc == 0 else { throw XCTSkip("ip \(args.joined(separator: " ")): \(out)") }
    }

    func receiver() throws -> (pid: Int32, port: UInt16) {
        let out = h.dir + "/receive.out"
        let pid = try Subprocess.spawn("/usr/bin/nsenter", ["--net=/run/netns/" + spaces[0], h.bin + "/cryo", "migrate-receive", "--address", dst, "--port", "0",
                                                            "-v4", "-o", h.dir + "/receive.log"], output: out)
        daemons.append(pid)
        for _ in 0..<1000 {
            if let t = try? String(contentsOfFile: out, encoding: .utf8), let p = UInt16(t.trimmingCharacters(in: .whitespacesAndNewlines)) { return (pid, p) }
            usleep(10_000)
        }
        throw XCTSkip("migrate-receive did not start: \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
    }

    /// Runs `cryo migrate` from the source namespace, reaping the workload's old pid (we are
    /// its subreaper) so the destination can take it back.
    func migrate(_ pid: Int32, to: String, extra: [String] = []) throws -> (Int32, String) {
        let out = h.dir + "/migrate-\(UUID().uuidString).out"
        let m = try Subprocess.spawn("/usr/bin/nsenter", ["--net=/run/netns/" + spaces[1], h.bin + "/cryo", "migrate", "-t", String(pid), "--to", to,
                                                          "-v4", "-o", h.dir + "/migrate.log"] + extra, output: out)
        let deadline = Date(timeIntervalSinceNow: 120)
        while Date() < deadline {
            var st: Int32 = 0
            _ = waitpid(pid, &st, WNOHANG)
            if let s = try Subprocess.wait(m, timeout: 0) { return (Subprocess.exitCode(s), (try? String(contentsOfFile: out, encoding: .utf8)) ?? "") }
            usleep(2_000)
        }
        Subprocess.kill9(m)
        XCTFail("cryo migrate did not finish in 120 s")
        return (-1, "")
    }

    func testMigrateBetweenNamespaces() throws {
        let (recv, port) = try receiver()
        // In the source's network namespace, where cryo migrate runs: a tree in one other than
        // cryo's would be dumped with it (and the host's is shared with everything else).
        let pid = try h.start("dirty00", netns: spaces[1])
        let (rc, out) = try migrate(pid, to: "\(dst):\(port)")
        print(out)
        XCTAssertEqual(rc, 0, out + ((try? String(contentsOfFile: h.dir + "/migrate.log", encoding: .utf8)) ?? ""))
        XCTAssertTrue(out.contains("round 1: ") && out.contains("final dump: ") && out.contains("downtime"), out)
        XCTAssertTrue(out.contains("restored as pid \(pid)"), out)
        XCTAssertEqual(kill(pid, 0), 0, "the restored tree is not running")
        // The receiver ends after its one migration.
        XCTAssertNotNil(try Subprocess.wait(recv, timeout: 10))
        XCTAssertEqual(try h.stop(pid, name: "dirty00"), "PASS")
    }

    /// Post-copy at the end: the destination restores lazily, the tree runs before its memory
    /// is in, and the receiver's lazy-pages daemon fills it from the cache (dirty00 keeps
    /// writing meanwhile, so some pages come in by fault); the receiver ends once every page is
    /// in, and the workload's own check of its memory passes.
    func testLazyMigrateBetweenNamespaces() throws {
        let (recv, port) = try receiver()
        let pid = try h.start("dirty00", netns: spaces[1])
        let (rc, out) = try migrate(pid, to: "\(dst):\(port)", extra: ["--lazy-pages"])
        print(out)
        XCTAssertEqual(rc, 0, out + ((try? String(contentsOfFile: h.dir + "/migrate.log", encoding: .utf8)) ?? ""))
        XCTAssertTrue(out.contains("restored lazily as pid \(pid)"), out)
        XCTAssertEqual(kill(pid, 0), 0, "the restored tree is not running")
        XCTAssertNotNil(try Subprocess.wait(recv, timeout: 60), "the receiver did not end once the pages were in")
        let rout = (try? String(contentsOfFile: h.dir + "/receive.out", encoding: .utf8)) ?? ""
        XCTAssertTrue(rout.contains("lazy-pages: 1 task(s), all in after"), rout + ((try? String(contentsOfFile: h.dir + "/receive.log.lazy-pages", encoding: .utf8)) ?? ""))
        XCTAssertEqual(try h.stop(pid, name: "dirty00"), "PASS")
    }

    /// Garbage to the receiver closes that connection only; a migration to nowhere fails
    /// before anything is frozen and the tree runs on.
    func testFailuresLeaveTreeRunning() throws {
        let (recv, port) = try receiver()
        let pid = try h.start("pause00")
        let (rc, out) = try migrate(pid, to: "\(dst):1")
        XCTAssertNotEqual(rc, 0)
        XCTAssertTrue(out.contains("cryo migrate:"), out)
        XCTAssertEqual(kill(pid, 0), 0)
        // Hostile headers to migrate-receive (oversized length, a ".." name), sent from inside
        // the source namespace: it closes that connection and lives on.
        let script = """
        import socket, struct
        for name in (b"..", b"core-1.img"):
            s = socket.create_connection(("\(dst)", \(port)), timeout=5)
            hdr = struct.pack("<IBBHHHQI", 0x58525943, 2, 0, 1, len(name), 0, 1 << 60 if name != b".." else 1, 0)
            s.sendall(hdr + b"s" + name + (b"x" if name == b".." else b""))
            try:
                while s.recv(65536): pass
            except ConnectionResetError:
                pass
            print("closed")
        """
        let (_, gout) = try CRHarness.capture("/usr/bin/nsenter", ["--net=/run/netns/" + spaces[1], "python3", "-c", script])
        XCTAssertEqual(gout.components(separatedBy: "closed").count - 1, 2, gout)
        XCTAssertEqual(kill(recv, 0), 0, "migrate-receive died on hostile headers")
        XCTAssertEqual(try h.stop(pid, name: "pause00"), "PASS")
    }
}
