import CKernel
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// A tree in a network namespace of its own (docs/NETNS.md): netns00 with a veth to a second
/// test namespace, where an echo server sits on a bridge (10.233.0.0/24). cryo runs in that
/// outer namespace, as CRIU does beside a container. Both namespaces are made here and
/// removed after, whatever happens; nothing touches the host's network.
final class NetnsTests: XCTestCase {
    static let echo = """
        import socket, sys, os
        os.closerange(3, 4096)
        l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1)
        open("listening", "w").write("1")
        s, _ = l.accept()
        n = 0
        while True:
            d = s.recv(65536)
            if not d: break
            s.sendall(d); n += len(d)
        s.shutdown(socket.SHUT_WR)
        open("echoed", "w").write(str(n))
        """

    struct Env {
        let ip: String, nsenter: String, work: String, outer: String, inner: String, bin: String
        var cryo: String { bin + "/cryo" }
        var outerPath: String { "/run/netns/" + outer }
    }

    func tools() throws -> (ip: String, nsenter: String) {
        guard getuid() == 0 else {
            print("NetnsTests: skipped, network namespaces and dumps need root")
            throw XCTSkip("needs root")
        }
        func find(_ n: String) -> String? { ["/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"].map { $0 + n }.first { access($0, X_OK) == 0 } }
        for t in ["ip", "nsenter", "nft", "python3"] where find(t) == nil {
            print("NetnsTests: skipped, \(t) is not installed (ci/deps.sh installs iproute2, util-linux, nftables, python3)")
            throw XCTSkip("no \(t)")
        }
        return (find("ip")!, find("nsenter")!)
    }

    /// Runs a command to completion with its output in a file (nothing waits on a pipe).
    @discardableResult
    func run(_ path: String, _ args: [String], _ env: Env) throws -> (code: Int32, out: String) {
        let log = env.work + "/cmd-\(UUID().uuidString).log"
        defer { unlink(log) }
        let st = try Subprocess.run(path, args, cwd: env.work, log: log, timeout: 60)
        return (Subprocess.exitCode(st), (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    /// The two namespaces, the echo server and netns00 in the inner namespace, which is then
    /// held by netns00 alone. Calls `body`, then removes everything.
    func withSetup(_ name: String, _ body: (Env, _ workload: Int32) throws -> Void) throws {
        let (ipPath, nsenter) = try tools()
        _ = ck_prctl(36, 1, 0, 0, 0)  // PR_SET_CHILD_SUBREAPER: the workload and its restored self are ours
        let tag = "\(getpid() % 100000)\(name)"
        let env = Env(ip: ipPath, nsenter: nsenter, work: try Locations.makeRunDir(), outer: "cryo-t-\(tag)-o", inner: "cryo-t-\(tag)-i", bin: Locations.selfDir())
        var pids: [Int32] = []
        defer {
            for p in pids where kill(p, 0) == 0 { Subprocess.kill9(p) }
            if let p = Int32(read(env.work + "/restored.pid").trimmingCharacters(in: .whitespacesAndNewlines)), kill(p, 0) == 0 { Subprocess.kill9(p) }
            _ = try? run(ipPath, ["netns", "del", env.outer], env)
            _ = try? run(ipPath, ["netns", "del", env.inner], env)
            try? FileManager.default.removeItem(atPath: env.work)
        }
        let (o, i) = (env.outer, env.inner)
        for cmd in [["netns", "add", o], ["netns", "add", i], ["-n", o, "link", "set", "lo", "up"],
                    ["-n", o, "link", "add", "br0", "type", "bridge"], ["-n", o, "addr", "add", "10.233.0.1/24", "dev", "br0"], ["-n", o, "link", "set", "br0", "up"],
                    ["-n", o, "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", i], ["-n", o, "link", "set", "vout", "master", "br0", "up"],
                    ["-n", i, "link", "set", "lo", "up"], ["-n", i, "link", "set", "eth0", "mtu", "1400", "up"],
                    ["-n", i, "addr", "add", "10.233.0.2/24", "dev", "eth0"], ["-n", i, "addr", "add", "fd00:233::2/64", "dev", "eth0", "nodad"],
                    ["-n", i, "route", "add", "10.233.5.0/24", "via", "10.233.0.1"],
                    ["netns", "exec", i, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv4.ip_local_port_range=20000 30000"]] {
            let (code, out) = try run(ipPath, cmd, env)
            guard code == 0 else { return XCTFail("ip \(cmd.joined(separator: " ")): \(out)") }
        }
        // netns00 records the IPv6 tables too: they must be settled (link-local DAD done) first.
        for _ in 0..<100 {
            let t = try run(ipPath, ["-n", i, "-6", "addr", "show", "dev", "eth0", "tentative"], env).out
            if t.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { break }
            usleep(50_000)
        }
        let server = try Subprocess.spawn(nsenter, ["--net=" + env.outerPath, "/usr/bin/python3", "-c", Self.echo, "10.233.0.1", "7777"], cwd: env.work, output: env.work + "/echo.log")
        pids.append(server)
        guard CRHarness.waitFor(env.work + "/listening", seconds: 15) else { return XCTFail("echo server: " + read(env.work + "/echo.log")) }
        let (wc, wout) = try run(nsenter, ["--net=/run/netns/" + i, env.bin + "/netns00", "--pidfile=" + env.work + "/wl.pid",
                                           "--outfile=" + env.work + "/wl.out", "--peer=10.233.0.1:7777"], env)
        guard wc == 0, let wl = Int32(read(env.work + "/wl.pid").trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return XCTFail("netns00 did not start: \(wout) \(read(env.work + "/wl.out"))")
        }
        pids.append(wl)
        // From here the inner namespace is the tree's alone.
        XCTAssertEqual(try run(ipPath, ["netns", "del", i], env).code, 0)
        usleep(300_000)  // streaming
        try body(env, wl)
    }

    func cryo(_ env: Env, _ args: [String]) throws -> (code: Int32, out: String) {
        try run(env.nsenter, ["--net=" + env.outerPath, env.cryo] + args, env)
    }

    func lockTables(_ env: Env, pid: Int32) throws -> String {
        try run(env.nsenter, ["--net=/proc/\(pid)/ns/net", "nft", "list", "tables"], env).out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stopAndCheck(_ env: Env, pid: Int32) throws {
        kill(pid, SIGTERM)
        XCTAssertTrue(CRHarness.waitFor(env.work + "/wl.out", seconds: 30), "netns00 wrote no result")
        usleep(200_000)
        let out = read(env.work + "/wl.out")
        print("NetnsTests: netns00 says \(out.trimmingCharacters(in: .whitespacesAndNewlines)); echo server echoed \(read(env.work + "/echoed")) bytes")
        XCTAssertTrue(out.contains("PASS"), out)
    }

    func testTreeInItsOwnNamespaceComesBack() throws {
        try withSetup("r") { env, wl in
            let ext = ["--external", "veth[eth0]:vout@br0"]
            let (dc, dout) = try cryo(env, ["dump", "-t", "\(wl)", "-D", env.work + "/img", "-v4", "-o", "dump.log"] + ext)
            XCTAssertEqual(dc, 0, "dump: \(dout) " + read(env.work + "/img/dump.log").suffix(2000))
            guard dc == 0 else { return }
            _ = try Subprocess.wait(wl, timeout: 10)  // killed by the dump
            for f in ["netdev", "netns", "ifaddr", "route", "route6"] {
                let found = (try FileManager.default.contentsOfDirectory(atPath: env.work + "/img")).contains { $0.hasPrefix(f + "-") }
                XCTAssertTrue(found, "no \(f)-N.img")
            }
            // Without the outside end named, restore refuses before making anything.
            let (bad, badOut) = try cryo(env, ["restore", "-D", env.work + "/img", "-d"])
            XCTAssertNotEqual(bad, 0)
            XCTAssertTrue(badOut.contains("veth[eth0]"), badOut)
            XCTAssertNotEqual(kill(wl, 0), 0, "a refused restore left pid \(wl) behind")
            XCTAssertFalse(try run(env.ip, ["-n", env.outer, "link", "show", "vout"], env).code == 0, "a refused restore left vout behind")

            let (rc, rout) = try cryo(env, ["restore", "-D", env.work + "/img", "-d", "--pidfile", env.work + "/restored.pid", "-v4", "-o", "restore.log"] + ext)
            XCTAssertEqual(rc, 0, "restore: \(rout) " + read(env.work + "/img/restore.log").suffix(2000))
            guard rc == 0 else { return }
            XCTAssertEqual(kill(wl, 0), 0, "the restored workload is not running")
            XCTAssertEqual(try lockTables(env, pid: wl), "", "the network lock was not lifted")
            let vout = try run(env.ip, ["-n", env.outer, "link", "show", "vout"], env).out
            XCTAssertTrue(vout.contains("master br0") && vout.contains("UP"), vout)
            usleep(1_000_000)  // the stream resumes (retransmission)
            try stopAndCheck(env, pid: wl)
        }
    }

    func testVethNotNamedExternalIsRefused() throws {
        try withSetup("x") { env, wl in
            let (dc, dout) = try cryo(env, ["dump", "-t", "\(wl)", "-D", env.work + "/img"])
            XCTAssertNotEqual(dc, 0)
            XCTAssertTrue(dout.contains("eth0") && dout.contains("--external veth[eth0]"), dout)
            XCTAssertEqual(kill(wl, 0), 0, "a refused dump must leave the tree running")
            XCTAssertEqual(try lockTables(env, pid: wl), "", "a refused dump must lift the network lock")
            usleep(300_000)
            try stopAndCheck(env, pid: wl)
        }
    }
}
