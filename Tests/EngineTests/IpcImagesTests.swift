import XCTest
import Glibc
@testable import Engine

/// CRIU's SysV IPC images: entries with their raw payloads (shm bytes padded to 4, sem values
/// padded to 8, messages each framed and padded to 8) read back as written, and a generic
/// reader (`cryo image info`) steps over the payloads.
final class IpcImagesTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        var t = Array("/tmp/cryo-ipc-test-XXXXXX".utf8CString)
        dir = String(cString: mkdtemp(&t)!)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func desc(_ id: UInt32, key: UInt32) -> Img_IpcDescEntry {
        var d = Img_IpcDescEntry()
        d.id = id; d.key = key; d.uid = 1; d.gid = 2; d.cuid = 3; d.cgid = 4; d.mode = 0o640
        return d
    }

    func testShmSemMsgRoundTrip() throws {
        let d = try ImageDirectory(path: dir)
        var s1 = Img_IpcShmEntry(); s1.desc = desc(77, key: 0x5a5a); s1.size = 4099
        var s2 = Img_IpcShmEntry(); s2.desc = desc(3, key: 0); s2.size = 1
        let shm = [IpcImages.Segment(entry: s1, data: (0..<4099).map { UInt8($0 % 251) }), IpcImages.Segment(entry: s2, data: [9])]
        try IpcImages.writeShm(shm, id: 5, images: d)
        let shmBack = try IpcImages.readShm(id: 5, images: d)
        XCTAssertEqual(shmBack.map(\.entry), shm.map(\.entry))
        XCTAssertEqual(shmBack.map(\.data), shm.map(\.data))

        var e1 = Img_IpcSemEntry(); e1.desc = desc(1, key: 7); e1.nsems = 3
        var e2 = Img_IpcSemEntry(); e2.desc = desc(2, key: 8); e2.nsems = 4
        try IpcImages.writeSem([IpcImages.SemSet(entry: e1, values: [0, 65535, 300]), IpcImages.SemSet(entry: e2, values: [1, 2, 3, 4])], id: 5, images: d)
        let semBack = try IpcImages.readSem(id: 5, images: d)
        XCTAssertEqual(semBack.map(\.values), [[0, 65535, 300], [1, 2, 3, 4]])
        XCTAssertEqual(semBack.map(\.entry), [e1, e2])

        var q = Img_IpcMsgEntry(); q.desc = desc(9, key: 1); q.qbytes = 16384; q.qnum = 3
        var empty = Img_IpcMsgEntry(); empty.desc = desc(10, key: 0); empty.qbytes = 16384; empty.qnum = 0
        let msgs = [IpcImages.Message(type: 5, text: []), IpcImages.Message(type: 1, text: Array("hello".utf8)), IpcImages.Message(type: 1 << 40, text: [UInt8](repeating: 7, count: 17))]
        try IpcImages.writeMsg([IpcImages.Queue(entry: q, messages: msgs), IpcImages.Queue(entry: empty, messages: [])], id: 5, images: d)
        let msgBack = try IpcImages.readMsg(id: 5, images: d)
        XCTAssertEqual(msgBack.map(\.entry), [q, empty])
        XCTAssertEqual(msgBack[0].messages.map(\.type), [5, 1, 1 << 40])
        XCTAssertEqual(msgBack[0].messages.map(\.text), msgs.map(\.text))

        for (kind, n) in [(ImageKind.ipcnsShm, 2), (.ipcnsSem, 2), (.ipcnsMsg, 2)] {
            let info = try ImageJSON.info(file: d.filePath(kind, 5))
            XCTAssertEqual(info.entries, n, "\(kind)")
            XCTAssertEqual(try d.readAny(kind, id: 5).entries.count, n, "\(kind)")
        }
        XCTAssertEqual(ImageKind.parse(fileName: "ipcns-shm-5.img")?.kind, .ipcnsShm)
        XCTAssertEqual(ImageKind.parse(fileName: "ipcns-var-13.img")?.kind, .ipcnsVar)
    }

    /// A truncated payload is an error naming the file, not a short object.
    func testTruncatedShmIsRefused() throws {
        let d = try ImageDirectory(path: dir)
        var s = Img_IpcShmEntry(); s.desc = desc(1, key: 1); s.size = 100
        try IpcImages.writeShm([IpcImages.Segment(entry: s, data: [UInt8](repeating: 1, count: 100))], id: 1, images: d)
        let path = d.filePath(.ipcnsShm, 1)
        let bytes = try ImageDirectory.readFile(path)
        try Data(bytes.dropLast(10)).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try IpcImages.readShm(id: 1, images: d)) { XCTAssertTrue("\($0)".contains("ipcns-shm-1.img"), "\($0)") }
    }
}
