import XCTest
import Glibc
@testable import Engine

/// The /proc/net tables of raw and ping sockets, packet_diag, and the probe that finds a shut
/// send side, on real sockets where root allows them.
final class RawPacketSocketTests: XCTestCase {
    func testProcNetSocketParse() throws {
        let raw = """
              sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
             253: 0100007F:00FD 0100007F:0000 01 00000000:00000340 00:00000000 00000000     0        0 8275402 2 0000000000000000 0

            """
        let s = try ProcNetSocketParser.parse(raw, source: "raw")
        XCTAssertEqual(s.count, 1)
        XCTAssertEqual(s[0].local, [UInt32(0x7f00_0001).bigEndian])
        XCTAssertEqual(s[0].localPort, 253)
        XCTAssertEqual(s[0].state, 1)
        XCTAssertEqual(s[0].rxQueue, 0x340)
        XCTAssertEqual(s[0].inode, 8_275_402)
        let v6 = """
              sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
             1: 00000000000000000000000001000000:0011 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 0000000000000000 0

            """
        let t = try ProcNetSocketParser.parse(v6, source: "icmp6")
        XCTAssertEqual(t[0].local, [0, 0, 0, UInt32(1).bigEndian])
        XCTAssertEqual(t[0].localPort, 17)
        XCTAssertEqual(t[0].state, 7)
        XCTAssertThrowsError(try ProcNetSocketParser.parse("header\n 1: 0100007F 0 0\n", source: "raw"))
    }

    func testPingSocketIsInItsTable() throws {
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), Int32(IPPROTO_ICMP))
        guard s >= 0 else { throw XCTSkip("no ping sockets for this gid (net.ipv4.ping_group_range): errno \(errno)") }
        defer { close(s) }
        let a = InetSocket.sockaddrBytes(family: AF_INET, addr: [UInt32(0x7f00_0001).bigEndian], port: 0)
        XCTAssertEqual(a.withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }, 0)
        var st = stat()
        XCTAssertEqual(fstat(s, &st), 0)
        let line = try ProcReader().netSockets(pid: getpid(), table: "icmp").first { $0.inode == UInt64(st.st_ino) }
        let l = try XCTUnwrap(line)
        XCTAssertNotEqual(l.localPort, 0)
        XCTAssertEqual(l.local, [UInt32(0x7f00_0001).bigEndian])
    }

    func testPacketDiagOfARealSocket() throws {
        let proto: UInt16 = 0x88b5
        let s = socket(AF_PACKET, Int32(SOCK_DGRAM.rawValue), Int32(proto.bigEndian))
        guard s >= 0 else { throw XCTSkip("no packet sockets here (CAP_NET_RAW): errno \(errno)") }
        defer { close(s) }
        let lo = if_nametoindex("lo")
        var ll = [UInt8](repeating: 0, count: 20)
        ll[0] = UInt8(AF_PACKET); ll[2] = UInt8(proto >> 8); ll[3] = UInt8(proto & 0xff)
        withUnsafeBytes(of: Int32(lo)) { for i in 0..<4 { ll[4 + i] = $0[i] } }
        XCTAssertEqual(ll.withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }, 0)
        var on: Int32 = 1
        XCTAssertEqual(setsockopt(s, PacketSocket.solPacket, PacketSocket.auxdata, &on, 4), 0)
        var st = stat()
        XCTAssertEqual(fstat(s, &st), 0)
        let d = try XCTUnwrap(try SockDiag.packet(ino: UInt32(st.st_ino)))
        XCTAssertEqual(d.type, UInt8(SOCK_DGRAM.rawValue))
        XCTAssertEqual(d.num, proto)
        XCTAssertEqual(d.ifindex, lo)
        XCTAssertEqual(d.flags & 3, 3)  // running, auxdata
        XCTAssertFalse(d.rxRing)
        XCTAssertNil(d.fanout)
    }

    func testShutSendSideIsFoundAndTheProbeLeavesNoTrace() throws {
        for shut in [false, true] {
            let s = socket(AF_INET, Int32(SOCK_RAW.rawValue), 253)
            guard s >= 0 else { throw XCTSkip("no raw sockets here (CAP_NET_RAW): errno \(errno)") }
            defer { close(s) }
            if shut { _ = Glibc.shutdown(s, Int32(SHUT_WR)) }
            var e = Img_InetSkEntry()
            e.family = UInt32(AF_INET); e.type = UInt32(SOCK_RAW.rawValue); e.proto = 253; e.state = 7
            XCTAssertEqual(try RawSocket.shutdown(s, pid: getpid(), entry: e, polled: 0), shut ? 2 : 0)
            XCTAssertEqual(SocketOptions.int(s, Int32(IPPROTO_IP), RawSocket.ipHdrincl), 0, "IP_HDRINCL is off again")
            var b = [UInt8](repeating: 0, count: 64)
            XCTAssertEqual(recv(s, &b, b.count, Int32(MSG_DONTWAIT)), -1, "nothing was sent to the socket itself")
        }
    }
}
