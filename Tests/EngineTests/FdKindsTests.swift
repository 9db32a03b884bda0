import XCTest
import Glibc
import CKernel
@testable import Engine

/// The pieces fd kinds are built from: the sock_diag codec, images whose entries carry raw
/// bytes, memfd contents as a shmem pagemap, reading pipes and socket queues without taking
/// anything, and SCM_RIGHTS.
final class FdKindsTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "fdkinds-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    // MARK: sock_diag

    func attr(_ type: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var b: [UInt8] = []
        let len = 4 + payload.count
        b.append(UInt8(len & 0xff)); b.append(UInt8(len >> 8)); b.append(UInt8(type & 0xff)); b.append(UInt8(type >> 8))
        b += payload
        while b.count % 4 != 0 { b.append(0) }
        return b
    }

    func reply(ino: UInt32, type: UInt8, state: UInt8, attrs: [UInt8], msgType: UInt16 = 20) -> [UInt8] {
        var body: [UInt8] = [UInt8(AF_UNIX), type, state, 0]
        body.putU32(ino); body.putU32(0xffff_ffff); body.putU32(0xffff_ffff)
        body += attrs
        var b: [UInt8] = []
        b.putU32(UInt32(16 + body.count)); b.append(UInt8(msgType & 0xff)); b.append(UInt8(msgType >> 8)); b += [0, 0]
        b.putU32(1); b.putU32(0)
        return b + body
    }

    func testUnixDiagRequestLayout() {
        let r = SockDiag.unixRequest(ino: 0x1234, seq: 9)
        XCTAssertEqual(r.count, 40)
        XCTAssertEqual(r.u32(at: 0), 40)
        XCTAssertEqual(r[4], 20)  // SOCK_DIAG_BY_FAMILY
        XCTAssertEqual(r[16], UInt8(AF_UNIX))
        XCTAssertEqual(r.u32(at: 24), 0x1234)
        XCTAssertEqual(r.u32(at: 28) & 0x4, 0x4, "asks for the peer")
    }

    func testUnixDiagParse() throws {
        var rq: [UInt8] = []; rq.putU32(3); rq.putU32(128)
        var icons: [UInt8] = []; icons.putU32(77); icons.putU32(78)
        var peer: [UInt8] = []; peer.putU32(555)
        let name: [UInt8] = Array("/tmp/sock".utf8) + [0]
        let b = reply(ino: 42, type: 1, state: 10, attrs: attr(0, name) + attr(2, peer) + attr(3, icons) + attr(4, rq) + attr(6, [1]))
        let d = try SockDiag.parseUnix(b, ino: 42)
        XCTAssertEqual(d.type, 1)
        XCTAssertEqual(d.state, 10)
        XCTAssertEqual(d.name, name)
        XCTAssertEqual(d.peer, 555)
        XCTAssertEqual(d.icons, [77, 78])
        XCTAssertEqual(d.rqueue, 3)
        XCTAssertEqual(d.wqueue, 128)
        XCTAssertEqual(d.shutdown, 1)
    }

    func testUnixDiagRejectsBadReplies() {
        var err: [UInt8] = []
        err.putU32(36); err += [2, 0, 0, 0]; err.putU32(1); err.putU32(0)
        err.putU32(UInt32(bitPattern: -ENOENT)); err += [UInt8](repeating: 0, count: 16)
        XCTAssertThrowsError(try SockDiag.parseUnix(err, ino: 5)) { e in
            guard case SockDiagError.kernel(5, ENOENT) = e else { return XCTFail("\(e)") }
        }
        var good = reply(ino: 5, type: 2, state: 7, attrs: attr(2, [1, 0, 0, 0]))
        XCTAssertThrowsError(try SockDiag.parseUnix(good, ino: 6), "a reply for another inode")
        // An attribute claiming more bytes than the message has.
        good[32] = 200
        XCTAssertThrowsError(try SockDiag.parseUnix(good, ino: 5))
        XCTAssertThrowsError(try SockDiag.parseUnix([1, 2, 3], ino: 5))
        // A peer attribute too short to hold an inode.
        XCTAssertThrowsError(try SockDiag.parseUnix(reply(ino: 5, type: 2, state: 7, attrs: attr(2, [1])), ino: 5))
    }

    func testUnixDiagSeesThePeerOfARealPair() throws {
        var sv: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv), 0)
        defer { close(sv[0]); close(sv[1]) }
        var a = stat(), b = stat()
        fstat(sv[0], &a); fstat(sv[1], &b)
        let d = try SockDiag.unix(ino: UInt32(a.st_ino))
        XCTAssertEqual(d.type, 1)
        XCTAssertEqual(d.peer, UInt32(b.st_ino))
        XCTAssertTrue(d.name.isEmpty)
        XCTAssertEqual(SockDiag.protocolName(pid: getpid(), fd: sv[0])?.hasPrefix("UNIX"), true)
    }

    // MARK: images with payloads

    func testPayloadImagesRoundTripAndValidate() throws {
        let d = try ImageDirectory(path: dir)
        var e1 = Img_PipeDataEntry(); e1.pipeID = 7; e1.bytes = 5; e1.size = 65536
        var e2 = Img_PipeDataEntry(); e2.pipeID = 8; e2.bytes = 0
        try d.writeWithPayloads(.pipesData, [(e1, Array("hello".utf8)), (e2, [])])
        let back = try d.readWithPayloads(.pipesData, as: Img_PipeDataEntry.self) { Int($0.bytes) }
        XCTAssertEqual(back.map(\.0), [e1, e2])
        XCTAssertEqual(back[0].1, Array("hello".utf8))
        XCTAssertEqual(try d.readAny(.pipesData).entries.count, 2)
        // A payload cut short is reported, not read past the end.
        try d.writeWithPayloads(.pipesData, [(e1, Array("hello".utf8))])
        let path = d.filePath(.pipesData)
        let bytes = try d.readBytes(path)
        try d.writeBytes(path, Array(bytes.dropLast(2)))
        XCTAssertThrowsError(try d.readWithPayloads(.pipesData, as: Img_PipeDataEntry.self) { Int($0.bytes) })
    }

    func testMemfdContentsKeepHolesOut() throws {
        let d = try ImageDirectory(path: dir)
        let page = imagePageSize
        var data = [UInt8](repeating: 0, count: 3 * page + 100)
        data[5] = 1
        data[3 * page + 99] = 9
        try MemFd.writeContents(data, shmid: 3, images: d)
        var m = Img_MemfdInodeEntry()
        m.name = "x"; m.uid = 0; m.gid = 0; m.size = UInt64(data.count); m.shmid = 3; m.seals = 0; m.inodeID = 1
        let parts = try MemFd.readContents(m, images: d)
        XCTAssertEqual(parts.map(\.offset), [0, UInt64(3 * page)], "the two zero pages are holes")
        var rebuilt = [UInt8](repeating: 0, count: data.count)
        for (off, b) in parts { rebuilt.replaceSubrange(Int(off)..<(Int(off) + b.count), with: b) }
        XCTAssertEqual(rebuilt, data)
        XCTAssertEqual(try d.readBytes(d.filePath(.pages, Int(MemFd.pagesIDBase + 3))).count, 2 * page)
        // An inode smaller than its pagemap says is refused.
        m.size = 10
        XCTAssertThrowsError(try MemFd.readContents(m, images: d))
    }

    // MARK: reading without taking

    func testPipePeekLeavesTheData() throws {
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        defer { close(p[0]); close(p[1]) }
        let msg = Array("in flight".utf8)
        for _ in 0..<3 { XCTAssertEqual(write(p[1], msg, msg.count), msg.count) }
        let (bytes, size) = try PipeData.peek(p[0], what: "test pipe")
        XCTAssertEqual(bytes, msg + msg + msg)
        XCTAssertEqual(size, UInt32(ck_fcntl_int(p[0], PipeData.getSize, 0)))
        var buf = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(read(p[0], &buf, 64), 3 * msg.count, "peek consumed data")
    }

    func testSocketPeekLeavesTheQueueAndTakesFdsInFlight() throws {
        var sv: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0, &sv), 0)
        defer { close(sv[0]); close(sv[1]) }
        for m in ["one", "two!", "three"] { XCTAssertEqual(send(sv[0], m, m.utf8.count, 0), m.utf8.count) }
        let refuse = { (r: String) in DumpError.fdState(pid: 0, fd: sv[1], target: "test", reason: r) }
        let q = try UnixSocket.peekQueue(sv[1], stream: false, refuse: refuse)
        XCTAssertEqual(q.map { String(decoding: $0.bytes, as: UTF8.self) }, ["one", "two!", "three"])
        XCTAssertTrue(q.allSatisfy { $0.fds.isEmpty })
        var buf = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(recv(sv[1], &buf, 16, 0), 3, "the first datagram is still there")
        // A datagram with an fd: the peek hands cryo its own copy of the file.
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        defer { close(p[0]); close(p[1]) }
        XCTAssertEqual(ck_send_fds(sv[0], &p, 1), 0)
        let q2 = try UnixSocket.peekQueue(sv[1], stream: false, refuse: refuse)
        XCTAssertEqual(q2.count, 3)
        XCTAssertEqual(q2.last?.fds.count, 1)
        for e in q2 { e.fds.forEach { close($0) } }
        var a = stat(), b = stat()
        fstat(p[0], &a)
        let again = try UnixSocket.peekQueue(sv[1], stream: false, refuse: refuse)
        defer { for e in again { e.fds.forEach { close($0) } } }
        fstat(again[2].fds[0], &b)
        XCTAssertEqual(a.st_ino, b.st_ino, "the fd in flight is the pipe")
        XCTAssertEqual(recv(sv[1], &buf, 16, 0), 4, "still queued after peeking the fd")
    }

    func testStreamPeekCutsAfterTheBytesCarryingFds() throws {
        var sv: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv), 0)
        defer { close(sv[0]); close(sv[1]) }
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        defer { close(p[0]); close(p[1]) }
        XCTAssertEqual(send(sv[0], "AAAA", 4, 0), 4)
        XCTAssertEqual(ck_send_with_fds(sv[0], "BB", 2, &p, 2, nil, 0, 0), 2)
        XCTAssertEqual(send(sv[0], "CC", 2, 0), 2)
        let refuse = { (r: String) in DumpError.fdState(pid: 0, fd: sv[1], target: "test", reason: r) }
        let q = try UnixSocket.peekQueue(sv[1], stream: true, refuse: refuse)
        defer { for e in q { e.fds.forEach { close($0) } } }
        XCTAssertEqual(q.map { String(decoding: $0.bytes, as: UTF8.self) }, ["AAAABB", "CC"])
        XCTAssertEqual(q.map(\.fds.count), [2, 0])
    }

    func testSkQueueScmEntriesRoundTrip() throws {
        let d = try ImageDirectory(path: dir)
        var e1 = Img_SkPacketEntry(); e1.idFor = 4; e1.length = 3
        var scm = Img_ScmEntry(); scm.type = UnixSocket.scmRights; scm.rights = [9, 12, 9]
        e1.scm = [scm]
        var e2 = Img_SkPacketEntry(); e2.idFor = 4; e2.length = 2
        try d.writeWithPayloads(.skQueues, [(e1, Array("abc".utf8)), (e2, Array("de".utf8))])
        let back = try d.readWithPayloads(.skQueues, as: Img_SkPacketEntry.self) { Int($0.length) }
        XCTAssertEqual(back.map(\.0), [e1, e2])
        XCTAssertEqual(back[0].0.scm.first?.rights, [9, 12, 9], "rights keep their order and repeats")
        XCTAssertTrue(back[1].0.scm.isEmpty)
        XCTAssertEqual(back.map(\.1), [Array("abc".utf8), Array("de".utf8)])
        // CRIU's field numbers: scm is field 4 of sk_packet_entry, type 1 and rights 2 of scm_entry.
        let bytes = try e1.serializedBytes() as [UInt8]
        XCTAssertEqual(bytes, [0x08, 4, 0x10, 3, 0x22, 8, 0x08, 1, 0x10, 9, 0x10, 12, 0x10, 9])
    }

    func testSendAndReceiveFds() throws {
        var sv: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &sv), 0)
        defer { close(sv[0]); close(sv[1]) }
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        defer { close(p[0]); close(p[1]) }
        XCTAssertEqual(ck_send_fds(sv[0], &p, 2), 0)
        var got: [Int32] = [-1, -1, -1]
        XCTAssertEqual(ck_recv_fds(sv[1], &got, 3), 2)
        defer { close(got[0]); close(got[1]) }
        var a = stat(), b = stat()
        fstat(p[0], &a); fstat(got[0], &b)
        XCTAssertEqual(a.st_ino, b.st_ino, "the received fd is the same pipe")
        XCTAssertEqual(write(got[1], "z", 1), 1)
        var c: UInt8 = 0
        XCTAssertEqual(read(p[0], &c, 1), 1)
        XCTAssertEqual(c, UInt8(ascii: "z"))
    }

    func testTimespecAddCarries() {
        let r = TimerFd.add((1, 900_000_000), (2, 300_000_000))
        XCTAssertEqual(r.sec, 4)
        XCTAssertEqual(r.nsec, 200_000_000)
    }
}
