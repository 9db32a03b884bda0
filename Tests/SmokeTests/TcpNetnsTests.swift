import CKernel
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// A TCP connection across a (virtual) network: a server in one network namespace, a client in
/// another, joined by a veth pair. Only the client is dumped and restored; the server keeps
/// running throughout and checks that the stream carries on with nothing lost or repeated.
final class TcpNetnsTests: XCTestCase {
    // Both ends stream bytes whose value depends on their offset in the stream, so a byte
    // lost, repeated or changed shows at its offset. Each writes a line to `result`.
    static let common = """
        import socket, os, time, sys
        os.closerange(3, 4096)  # whatever the test process leaks: only the connection is dumped
        def pat(seed, off, n):
            return bytes(((o ^ (o >> 8) ^ (o >> 16) ^ seed) & 0xff) for o in range(off, off + n))
        def stream(s, seed_out, seed_in, stop):
            sent = recvd = 0
            s.setblocking(False)
            bad = None
            eof = False
            shut = False
            deadline = None
            while not eof and bad is None:
                if stop() and deadline is None:
                    deadline = time.time() + 30
                if deadline is not None and time.time() > deadline:
                    bad = "stalled: sent %d received %d" % (sent, recvd); break
                if not shut:
                    if deadline is not None and who == "client":
                        s.shutdown(socket.SHUT_WR); shut = True
                    else:
                        try: sent += s.send(pat(seed_out, sent, 4096))
                        except BlockingIOError: pass
                try:
                    d = s.recv(65536)
                    if not d: eof = True
                    elif d != pat(seed_in, recvd, len(d)): bad = "bytes %d..%d differ" % (recvd, recvd + len(d))
                    recvd += len(d)
                except BlockingIOError: time.sleep(0.005)
            if who == "server" and not shut: s.shutdown(socket.SHUT_WR)
            open("result-" + who, "w").write(("OK" if bad is None else "BAD " + bad) + " sent=%d received=%d" % (sent, recvd))
        """

    static let server = common + "\n" + """
        who = "server"
        l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((sys.argv[1], 7777)); l.listen(1)
        open("listening", "w").write("1")
        s, _ = l.accept()
        stream(s, 0x5a, 0xc3, lambda: False)
        """

    static let client = common + "\n" + """
        who = "client"
        s = socket.create_connection((sys.argv[1], 7777))
        open("connected", "w").write("1")
        stream(s, 0xc3, 0x5a, lambda: os.path.exists("stop"))
        """

    /// Runs a command to completion (30 s at most) with its output in a file: nothing here
    /// waits on a pipe that a long-lived child could keep open.
    func ip(_ args: [String], _ ipPath: String) throws -> (Int32, String) {
        let log = NSTemporaryDirectory() + "/tcpnetns-\(UUID().uuidString).log"
        defer { unlink(log) }
        let st = try Subprocess.run(ipPath, args, log: log, timeout: 30)
        return (Subprocess.exitCode(st), (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    func testClientRestoredAcrossVeth() throws {
        guard getuid() == 0 else {
            print("TcpNetnsTests: skipped, network namespaces and dumps need root")
            throw XCTSkip("needs root")
        }
        let candidates: [String] = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        guard let ipPath = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("TcpNetnsTests: skipped, the `ip` tool (iproute2) is not installed")
            throw XCTSkip("no ip tool")
        }
        _ = ck_prctl(36, 1, 0, 0, 0)  // PR_SET_CHILD_SUBREAPER: the restored client is re-parented to us
        let bin = Locations.selfDir()
        let work = try Locations.makeRunDir()
        let tag = "\(getpid() % 100000)"
        let (nsA, nsB, vA, vB) = ("cryoA\(tag)", "cryoB\(tag)", "vcA\(tag)", "vcB\(tag)")
        let (addrA, addrB) = ("10.231.7.1", "10.231.7.2")
        var pids: [Int32] = []
        defer {
            for p in pids where kill(p, 0) == 0 {
                kill(p, SIGKILL)
                _ = try? Subprocess.wait(p, timeout: 5)
            }
            _ = try? ip(["netns", "del", nsA], ipPath)
            _ = try? ip(["netns", "del", nsB], ipPath)
            try? FileManager.default.removeItem(atPath: work)
        }
        for cmd in [["netns", "add", nsA], ["netns", "add", nsB],
                    ["link", "add", vA, "netns", nsA, "type", "veth", "peer", "name", vB, "netns", nsB],
                    ["-n", nsA, "addr", "add", addrA + "/24", "dev", vA], ["-n", nsB, "addr", "add", addrB + "/24", "dev", vB],
                    ["-n", nsA, "link", "set", "lo", "up"], ["-n", nsB, "link", "set", "lo", "up"],
                    ["-n", nsA, "link", "set", vA, "up"], ["-n", nsB, "link", "set", vB, "up"]] {
            let (code, out) = try ip(cmd, ipPath)
            XCTAssertEqual(code, 0, "ip \(cmd.joined(separator: " ")): \(out)")
            guard code == 0 else { return }
        }
        func python(_ ns: String, _ code: String, _ arg: String) throws -> Int32 {
            // nsenter execs python3: the pid is the python process's. Network namespace only:
            // `ip netns exec` would give it a mount namespace of its own (a slave copy with
            // /sys mounted again), which cryo refuses to dump (docs/NAMESPACES.md).
            try Subprocess.spawn("/usr/bin/nsenter", ["--net=/run/netns/" + ns, "/usr/bin/python3", "-c", code, arg], cwd: work, output: work + "/stderr-" + ns)
        }
        let server = try python(nsA, Self.server, addrA)
        pids.append(server)
        guard CRHarness.waitFor(work + "/listening", seconds: 10) else {
            return XCTFail("the server did not start: " + ((try? String(contentsOfFile: work + "/stderr-" + nsA, encoding: .utf8)) ?? ""))
        }
        let client = try python(nsB, Self.client, addrA)
        pids.append(client)
        guard CRHarness.waitFor(work + "/connected", seconds: 10) else {
            return XCTFail("the client did not connect: " + ((try? String(contentsOfFile: work + "/stderr-" + nsB, encoding: .utf8)) ?? ""))
        }
        usleep(300_000)  // streaming both ways, queues filling

        // From outside the client's namespace the dump is refused (restore would make the
        // socket in the wrong one), and the client streams on.
        let refusedLog = work + "/refused.log"
        let refused = Subprocess.exitCode(try Subprocess.run(bin + "/cryo", ["dump", "-t", "\(client)", "-D", work + "/img-refused"], log: refusedLog, timeout: 60))
        let refusedOut = (try? String(contentsOfFile: refusedLog, encoding: .utf8)) ?? ""
        XCTAssertNotEqual(refused, 0)
        XCTAssertTrue(refusedOut.contains("network namespace"), refusedOut)
        XCTAssertEqual(kill(client, 0), 0, "a refused dump must leave the client running")

        // cryo has no network lock yet (CRIU's iptables/nftables one): the test stands in for
        // it, as a CRIU user with --network-lock skip would, by taking the server's side of
        // the link down. Otherwise the server's next segment would meet no socket in the
        // client's namespace and be answered with a reset.
        XCTAssertEqual(try ip(["-n", nsA, "link", "set", vA, "down"], ipPath).0, 0)
        let cryo = bin + "/cryo"
        // cryo makes the restored sockets in its own network namespace: run it in the client's.
        let (dc, dout) = try ip(["--net=/run/netns/" + nsB, cryo, "dump", "-t", "\(client)", "-D", work + "/img", "-v4", "-o", work + "/dump.log"], "/usr/bin/nsenter")
        XCTAssertEqual(dc, 0, "dump: \(dout)")
        guard dc == 0 else { return }
        _ = try Subprocess.wait(client, timeout: 10)  // killed by the dump; reaped before its pid is restored
        let (rc, rout) = try ip(["--net=/run/netns/" + nsB, cryo, "restore", "-D", work + "/img", "-d", "-v4", "-o", work + "/restore.log"], "/usr/bin/nsenter")
        XCTAssertEqual(rc, 0, "restore: \(rout)")
        XCTAssertEqual(try ip(["-n", nsA, "link", "set", vA, "up"], ipPath).0, 0)
        guard rc == 0 else { return }
        XCTAssertEqual(kill(client, 0), 0, "the restored client is not running")
        usleep(1_000_000)  // the stream resumes after the link comes back (retransmission)
        FileManager.default.createFile(atPath: work + "/stop", contents: nil)
        XCTAssertTrue(CRHarness.waitFor(work + "/result-client", seconds: 40), "the client did not finish")
        XCTAssertTrue(CRHarness.waitFor(work + "/result-server", seconds: 40), "the server did not finish")
        _ = try Subprocess.wait(server, timeout: 10)
        let c = (try? String(contentsOfFile: work + "/result-client", encoding: .utf8)) ?? "none"
        let s = (try? String(contentsOfFile: work + "/result-server", encoding: .utf8)) ?? "none"
        print("TcpNetnsTests: client \(c); server \(s)")
        XCTAssertTrue(c.hasPrefix("OK"), "client: \(c)")
        XCTAssertTrue(s.hasPrefix("OK"), "server: \(s)")
        // What one sent, the other received, exactly.
        func counts(_ r: String) -> (Int, Int)? {
            let f = r.split(separator: " ").compactMap { w -> (String, Int)? in
                let kv = w.split(separator: "=")
                return kv.count == 2 ? (String(kv[0]), Int(kv[1]) ?? -1) : nil
            }
            let d = Dictionary(f, uniquingKeysWith: { a, _ in a })
            guard let sent = d["sent"], let got = d["received"] else { return nil }
            return (sent, got)
        }
        if let cc = counts(c), let sc = counts(s) {
            XCTAssertEqual(cc.0, sc.1, "client sent \(cc.0), server received \(sc.1)")
            XCTAssertEqual(sc.0, cc.1, "server sent \(sc.0), client received \(cc.1)")
            XCTAssertGreaterThan(cc.0, 0)
        }
    }
}
