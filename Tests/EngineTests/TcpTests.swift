import XCTest
import Glibc
import CKernel
@testable import Engine

/// The TCP pieces that do not need a dump: struct tcp_info decoding, the tcp-stream image
/// (CRIU's hex-named file, one entry then both queues), and what the kernel reports for real
/// loopback sockets through them.
final class TcpTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "tcp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// A listener on 127.0.0.1 and a client connected to it (not accepted yet), with the address.
    func connectedOnLoopback(backlog: Int32) throws -> (listener: Int32, client: Int32, address: sockaddr_in) {
        let l = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(l, $0, len) == 0 && listen(l, backlog) == 0 && getsockname(l, $0, &len) == 0 } }
        guard bound else { let e = errno; close(l); throw SystemCallError(call: "bind/listen", errno: e, context: "127.0.0.1") }
        let c = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let connected = withUnsafeMutablePointer(to: &a) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, len) == 0 } }
        XCTAssertTrue(connected)
        return (l, c, a)
    }

    func testTcpInfoDecodesTheHead() throws {
        var b = [UInt8](repeating: 0, count: 104)
        b[0] = 10  // LISTEN
        b[5] = 0x7  // timestamps, SACK, window scaling
        b[6] = 0x9 | (0x7 << 4)  // snd_wscale 9, rcv_wscale 7
        b[24] = 3  // tcpi_unacked: the accept queue of a listener
        b[28] = 0x00; b[29] = 0x01  // tcpi_sacked: its backlog, 256
        let i = try XCTUnwrap(TcpInfo(bytes: b))
        XCTAssertEqual(i.state, TcpState.listen)
        XCTAssertEqual(i.options, 7)
        XCTAssertEqual(i.sndWscale, 9)
        XCTAssertEqual(i.rcvWscale, 7)
        XCTAssertEqual(i.listenQueued, 3)
        XCTAssertEqual(i.listenBacklog, 256)
        XCTAssertNil(TcpInfo(bytes: Array(b.prefix(31))), "too short to hold the listener fields")
        XCTAssertEqual(TcpState.name(8), "CLOSE_WAIT")
        XCTAssertEqual(TcpState.name(99), "state 99")
    }

    func testTcpInfoOfRealLoopbackSockets() throws {
        let (l, c, a) = try connectedOnLoopback(backlog: 7)
        defer { close(l); close(c) }
        // Not accepted yet: what the dump refuses for a listener.
        let li = try XCTUnwrap(TcpRepair.info(l))
        XCTAssertEqual(li.state, TcpState.listen)
        XCTAssertEqual(li.listenQueued, 1)
        XCTAssertEqual(li.listenBacklog, 7)
        let ci = try XCTUnwrap(TcpRepair.info(c))
        XCTAssertEqual(ci.state, TcpState.established)
        // Linux negotiates timestamps, SACK and window scaling on loopback by default.
        XCTAssertEqual(UInt32(ci.options) & TcpRepair.optWscale, TcpRepair.optWscale)
        XCTAssertEqual(TcpRepair.describe(AF_INET, [a.sin_addr.s_addr], UInt32(UInt16(bigEndian: a.sin_port))), "127.0.0.1:\(UInt16(bigEndian: a.sin_port))")
        XCTAssertEqual(TcpRepair.describe(AF_INET6, [0, 0, 0, UInt32(1).bigEndian], 80), "[::1]:80")
    }

    func testTcpStreamImageIsNamedInHexAndCarriesBothQueues() throws {
        XCTAssertEqual(ImageKind.tcpStream.fileName(0xf54c3), "tcp-stream-f54c3.img")
        XCTAssertEqual(ImageKind.parse(fileName: "tcp-stream-f54c3.img")?.id, 0xf54c3)
        XCTAssertEqual(ImageKind.parse(fileName: "tcp-stream-f54c3.img")?.kind, .tcpStream)
        for bad in ["tcp-stream-F54C3.img", "tcp-stream-0f.img", "tcp-stream-g1.img", "tcp-stream-.img"] {
            XCTAssertNil(ImageKind.parse(fileName: bad), bad)
        }
        // Other kinds keep decimal ids.
        XCTAssertNil(ImageKind.parse(fileName: "core-ab.img"))

        let d = try ImageDirectory(path: dir)
        var e = Img_TcpStreamEntry()
        e.inqLen = 3; e.inqSeq = 1000; e.outqLen = 5; e.outqSeq = 2000; e.unsqLen = 2
        e.optMask = 7; e.sndWscale = 7; e.rcvWscale = 9; e.mssClamp = 65483
        let bytes: [UInt8] = [1, 2, 3, 10, 20, 30, 40, 50]
        try d.writeWithPayloads(.tcpStream, id: 0xabc, [(e, bytes)])
        XCTAssertTrue(d.exists(.tcpStream, 0xabc))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/tcp-stream-abc.img"))
        let back = try d.readWithPayloads(.tcpStream, id: 0xabc, as: Img_TcpStreamEntry.self) { Int($0.inqLen) + Int($0.outqLen) }
        XCTAssertEqual(back.count, 1)
        XCTAssertEqual(back.first?.0, e)
        XCTAssertEqual(back.first?.1, bytes)
        // The generic reader (cryo image decode, validation) knows the tail's length too.
        XCTAssertEqual(try d.readAny(.tcpStream, id: 0xabc).entries.count, 1)
        // A tail shorter than the entry says is an error, not a short queue.
        let path = d.filePath(.tcpStream, 0xabc)
        XCTAssertEqual(truncate(path, off_t(try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) - 1)), 0)
        XCTAssertThrowsError(try d.readWithPayloads(.tcpStream, id: 0xabc, as: Img_TcpStreamEntry.self) { Int($0.inqLen) + Int($0.outqLen) })
    }

    /// The kernel fact behind FileDumpContext.settleTcp: a connection in repair mode still
    /// receives (and ACKs) what its peer sends, so a reading taken before the peer is frozen
    /// in repair mode goes stale. settleTcp must read it again and keep the new bytes.
    func testSettleRereadsAConnectionThatMovedAfterItWasRead() throws {
        guard getuid() == 0 else { throw XCTSkip("TCP_REPAIR needs CAP_NET_ADMIN: run as root") }
        let (l, c, _) = try connectedOnLoopback(backlog: 1)
        defer { close(l); close(c) }
        let s = accept(l, nil, nil)
        XCTAssertGreaterThanOrEqual(s, 0)
        defer { close(s) }

        let ctx = FileDumpContext(proc: ProcReader())
        let r = dup(s)
        XCTAssertEqual(TcpRepair.set(r, TcpRepair.repair, 1), 0)
        ctx.repaired.append((fd: r, what: "server end", reuseaddr: false))
        let refuse = { (why: String) in DumpError.fdState(pid: 0, fd: r, target: "server end", reason: why) }
        let (first, firstBytes) = try TcpRepair.take(r, state: TcpState.established, what: "server end", refuse: refuse)
        XCTAssertEqual(first.inqLen, 0)
        XCTAssertEqual(firstBytes, [])
        ctx.tcpStreams.append((ino: 1, entry: first, bytes: firstBytes, fd: r, what: "server end", state: TcpState.established))

        // The peer, not in repair mode, sends after the reading.
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        XCTAssertEqual(data.withUnsafeBytes { send(c, $0.baseAddress, $0.count, 0) }, 1000)
        var inq: Int32 = 0
        for _ in 0..<500 where inq < 1000 {
            usleep(1000)
            XCTAssertEqual(ck_ioctl(r, TcpRepair.siocinq, &inq), 0)
        }
        XCTAssertEqual(inq, 1000, "a socket in repair mode receives what its peer sends")
        XCTAssertFalse(TcpRepair.sameCut(try TcpRepair.take(r, state: TcpState.established, what: "server end", refuse: refuse).0, first))

        try ctx.settleTcp()
        let settled = try XCTUnwrap(ctx.tcpStreams.first)
        XCTAssertEqual(settled.entry.inqLen, 1000)
        XCTAssertEqual(settled.entry.inqSeq, first.inqSeq &+ 1000)
        XCTAssertEqual(settled.bytes, data)
        ctx.finishRepair(connectionsVanish: false)
    }

    /// RFC 1071's worked example (sum 0xddf2), and an odd length padded with a zero byte.
    func testSegmentChecksum() {
        XCTAssertEqual(TcpFins.checksum([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0x220d)
        XCTAssertEqual(TcpFins.checksum([0x00, 0x01, 0xf2]), ~UInt16(0xf201))
    }
}
