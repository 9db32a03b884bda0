import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// `cryo image-cache` and `cryo image-proxy` as real daemons: hostile input, a dropped
/// connection in the middle of a dump, the memory cap, and restores that wait for a snapshot
/// or are told its dump failed. Everything on loopback; daemons ended by pid.
final class RemoteImagesTests: XCTestCase {
    var h: CRHarness!
    var daemons: [Int32] = []

    override func setUpWithError() throws { h = try CRHarness.make("RemoteImagesTests") }

    override func tearDown() {
        for p in daemons { Subprocess.kill9(p) }
        h?.remove()
    }

    /// Starts a cache; its port and unix socket.
    func startCache(_ extra: [String] = []) throws -> (port: UInt16, sock: String, log: String) {
        let sock = h.dir + "/cache.sock", log = h.dir + "/cache.log", out = h.dir + "/cache.out"
        let pid = try Subprocess.spawn(h.bin + "/cryo", ["image-cache", "--port", "0", "--local-cache-path", sock, "-v4", "-o", log] + extra, output: out)
        daemons.append(pid)
        for _ in 0..<1000 {
            if let t = try? String(contentsOfFile: out, encoding: .utf8), let p = UInt16(t.trimmingCharacters(in: .whitespacesAndNewlines)), access(sock, F_OK) == 0 {
                return (p, sock, log)
            }
            usleep(10_000)
        }
        XCTFail("image-cache did not start: \((try? String(contentsOfFile: out, encoding: .utf8)) ?? "")")
        throw XCTSkip("no cache")
    }

    func startProxy(port: UInt16) throws -> String {
        let sock = h.dir + "/proxy-\(port).sock"
        let pid = try Subprocess.spawn(h.bin + "/cryo", ["image-proxy", "--port", String(port), "--local-proxy-path", sock, "-v4", "-o", h.dir + "/proxy-\(port).log"],
                                       output: h.dir + "/proxy.out")
        daemons.append(pid)
        for _ in 0..<1000 where access(sock, F_OK) != 0 { usleep(10_000) }
        XCTAssertEqual(access(sock, F_OK), 0, "image-proxy did not start")
        return sock
    }

    func alive(_ pid: Int32) -> Bool { kill(pid, 0) == 0 }

    /// Sends `bytes` and returns what came back before the peer closed (or 2 s passed).
    func exchange(_ fd: Int32, _ bytes: [UInt8]) -> [UInt8] {
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    /// True when the peer closed the connection (EOF) within 3 s; an error frame may come first.
    func closedByPeer(_ fd: Int32) -> Bool {
        var tv = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    func f(_ k: RemoteFrameKind, _ s: String, _ n: String = "", _ p: [UInt8] = []) -> [UInt8] { RemoteFrame(k, snapshot: s, name: n, payload: p).encode() }

    func rawHeader(kind: UInt8, snap: [UInt8], name: [UInt8], length: UInt64) -> [UInt8] {
        var b = RemoteFrame.encodeHead(.data, snapshot: "x", name: "", length: 0).prefix(RemoteFrame.headerSize).map { $0 }
        b[4] = kind
        b[6] = UInt8(snap.count & 0xff); b[7] = UInt8(snap.count >> 8); b[8] = UInt8(name.count & 0xff); b[9] = UInt8(name.count >> 8)
        for i in 0..<8 { b[12 + i] = UInt8(truncatingIfNeeded: length >> (8 * UInt64(i))) }
        return b + snap + name
    }

    /// Garbage, traversal names, NUL, oversized lengths and unknown snapshot ids, to the cache
    /// over TCP and to the proxy over its socket: each closes that connection, logs it, and the
    /// daemon serves the next connection.
    func testHostileHeaders() throws {
        let cache = try startCache()
        let proxy = try startProxy(port: cache.port)
        let hostile: [(String, [UInt8])] = [
            ("garbage", (0..<64).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }),
            ("traversal", f(.begin, "s1") + rawHeader(kind: 2, snap: Array("s1".utf8), name: Array("..".utf8), length: 1) + [0]),
            ("slash", f(.begin, "s1") + rawHeader(kind: 2, snap: Array("s1".utf8), name: Array("a/b".utf8), length: 1) + [0]),
            ("nul", f(.begin, "s1") + rawHeader(kind: 3, snap: Array("s1".utf8), name: [0x61, 0, 0x62], length: 0)),
            ("oversized", f(.begin, "s1") + rawHeader(kind: 2, snap: Array("s1".utf8), name: Array("pages-1.img".utf8), length: 1 << 40)),
            ("unknown snapshot", f(.data, "nope", "core-1.img", [1, 2, 3])),
        ]
        for (what, bytes) in hostile {
            let tcp = try TCP.connect(address: "127.0.0.1", port: cache.port)
            _ = bytes.withUnsafeBytes { send(tcp, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            XCTAssertTrue(closedByPeer(tcp), "cache kept the connection after \(what)")
            close(tcp)
            let unix = try UnixStream.connect(path: proxy)
            _ = bytes.withUnsafeBytes { send(unix, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            XCTAssertTrue(closedByPeer(unix), "proxy kept the connection after \(what)")
            close(unix)
        }
        // The refused snapshots are failed, not half-stored: a reader is told so.
        let r = try RemoteSnapshotReader(socketPath: cache.sock)
        XCTAssertThrowsError(try r.info("s1")) { XCTAssertTrue("\($0)".contains("failed"), "\($0)") }
        XCTAssertThrowsError(try r.info("nope")) { XCTAssertTrue("\($0)".contains("unknown snapshot id"), "\($0)") }
        // Both still serve a good writer.
        let fd = try UnixStream.connect(path: proxy)
        defer { close(fd) }
        let reply = exchange(fd, f(.begin, "good") + f(.data, "good", "x.img", [1, 2, 3]) + f(.end, "good", "x.img") + f(.complete, "good"))
        XCTAssertEqual(try RemoteFrame.decode(reply).frame.kind, .ok)
        XCTAssertEqual(try r.read("good", "x.img"), [1, 2, 3])
        XCTAssertTrue(alive(daemons[0]) && alive(daemons[1]))
    }

    /// A restore asking for a snapshot still being written waits, then restores; one asking
    /// after a failed dump gets an error naming that dump.
    func testRestoreWaitsForCompleteAndFailsAfterFailedDump() throws {
        let cache = try startCache()
        let pid = try h.start("pause00")
        let local = h.dir + "/local"
        let (rc, out) = try h.cryo(["dump", "-t", String(pid), "-D", local, "-v4", "-o", "dump.log"])
        XCTAssertEqual(rc, 0, out)
        h.waitGone([pid])
        // Play the proxy: send the folder's images as snapshot "late", complete it 2 s later.
        let tcp = try TCP.connect(address: "127.0.0.1", port: cache.port)
        defer { close(tcp) }
        try TCP.writeFull(tcp, f(.begin, "late"))
        for name in try FileManager.default.contentsOfDirectory(atPath: local) where name.hasSuffix(".img") {
            let bytes = try ImageDirectory.readFile(local + "/" + name)
            var off = 0
            while off < bytes.count {
                let n = min(RemoteFrame.maxChunk, bytes.count - off)
                try TCP.writeFull(tcp, f(.data, "late", name, Array(bytes[off..<off + n])))
                off += n
            }
            try TCP.writeFull(tcp, f(.end, "late", name))
        }
        let t0 = Date()
        let restorer = try Subprocess.spawn(h.bin + "/cryo", ["restore", "-D", "late", "--remote", "--local-cache-path", cache.sock, "-d",
                                                              "--pidfile", h.dir + "/r.pid", "-v4", "-o", h.dir + "/restore.log"], output: h.dir + "/restore.out")
        sleep(2)
        XCTAssertNil(try Subprocess.wait(restorer, timeout: 0), "restore did not wait for the snapshot")
        try TCP.writeFull(tcp, f(.complete, "late"))
        let st = try XCTUnwrap(try Subprocess.wait(restorer, timeout: 60))
        XCTAssertEqual(Subprocess.exitCode(st), 0, (try? String(contentsOfFile: h.dir + "/restore.out", encoding: .utf8)) ?? "")
        XCTAssertGreaterThan(Date().timeIntervalSince(t0), 1.9)
        XCTAssertEqual(try h.stop(pid, name: "pause00").hasSuffix("PASS"), true)

        let bad = try TCP.connect(address: "127.0.0.1", port: cache.port)
        try TCP.writeFull(bad, f(.begin, "broken") + f(.data, "broken", "core-1.img", [1]) + f(.failed, "broken", "", Array("cryo dump -t 4242 -D broken failed: pid 4242: boom".utf8)))
        usleep(200_000)
        let (rc2, out2) = try h.cryo(["restore", "-D", "broken", "--remote", "--local-cache-path", cache.sock, "-d"])
        close(bad)
        XCTAssertNotEqual(rc2, 0)
        XCTAssertTrue(out2.contains("cryo dump -t 4242 -D broken failed"), out2)
    }

    /// A cache that drops the connection in the middle of a dump: the dump fails cleanly, the
    /// workload runs on unharmed.
    func testDroppedConnectionFailsDumpTreeRuns() throws {
        let (lfd, port) = try TCP.listen(address: "127.0.0.1", port: 0)
        defer { close(lfd) }
        let dropper = Thread {
            let c = accept(lfd, nil, nil)
            guard c >= 0 else { return }
            var buf = [UInt8](repeating: 0, count: 65536)
            var got = 0
            while got < 200_000 { let n = recv(c, &buf, buf.count, 0); if n <= 0 { break }; got += n }
            close(c)
        }
        dropper.start()
        let proxy = try startProxy(port: port)
        let pid = try h.start("bigheap00")
        let (rc, out) = try h.cryo(["dump", "-t", String(pid), "-D", "snap", "--remote", "--local-proxy-path", proxy, "-v4", "-o", h.dir + "/drop.log"])
        XCTAssertNotEqual(rc, 0)
        XCTAssertTrue(out.contains("cryo dump"), out)
        XCTAssertTrue(alive(pid), "the tree did not survive the failed dump")
        XCTAssertTrue(try h.stop(pid, name: "bigheap00").hasSuffix("PASS"))
    }

    /// Past --memory-limit the cache refuses new images with a clear error; the dump fails,
    /// the tree runs on, the cache lives on.
    func testMemoryCap() throws {
        let cache = try startCache(["--memory-limit", "8K"])
        let proxy = try startProxy(port: cache.port)
        let pid = try h.start("pause00")
        let (rc, out) = try h.cryo(["dump", "-t", String(pid), "-D", "capped", "--remote", "--local-proxy-path", proxy, "-v4", "-o", h.dir + "/cap.log"])
        XCTAssertNotEqual(rc, 0)
        XCTAssertTrue(out.contains("memory limit of 8192 bytes"), out)
        XCTAssertTrue(alive(pid))
        XCTAssertTrue(alive(daemons[0]), "the cache died")
        XCTAssertTrue(try h.stop(pid, name: "pause00").hasSuffix("PASS"))
        let r = try RemoteSnapshotReader(socketPath: cache.sock)
        XCTAssertThrowsError(try r.info("capped")) { XCTAssertTrue("\($0)".contains("memory limit"), "\($0)") }
    }
}
