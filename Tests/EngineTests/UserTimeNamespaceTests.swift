import XCTest
@testable import Engine

/// The user and time namespace pieces that need no process: /proc's formats, the id maps
/// between cryo's view and the tree's, the images' kinds.
final class UserTimeNamespaceTests: XCTestCase {
    func testIdMapAndOffsetsParse() {
        XCTAssertEqual(ProcReader.parseIdMap("         0     100000      65536\n     65536     300000         10\n"),
                       [IdExtent(first: 0, lowerFirst: 100000, count: 65536), IdExtent(first: 65536, lowerFirst: 300000, count: 10)])
        let o = ProcReader.parseTimeOffsets("monotonic      864000         5\nboottime     -1728000         0\n")
        XCTAssertEqual(o.monotonic.sec, 864000); XCTAssertEqual(o.monotonic.nsec, 5)
        XCTAssertEqual(o.boottime.sec, -1728000)
        // Older kernels name the clocks by id.
        XCTAssertEqual(ProcReader.parseTimeOffsets("1 7 0\n7 9 0\n").boottime.sec, 9)
    }

    func testCredsAndOptionsInside() throws {
        let m = UserIdMaps(uids: [IdExtent(first: 0, lowerFirst: 100000, count: 65536)], gids: [IdExtent(first: 0, lowerFirst: 200000, count: 100)])
        var c = Img_CredsEntry()
        c.uid = 100000; c.euid = 100005; c.suid = 100000; c.fsuid = 100005
        c.gid = 200000; c.egid = 200001; c.sgid = 200000; c.fsgid = 200001
        c.groups = [200002]
        let i = try m.inside(c, pid: 7)
        XCTAssertEqual([i.uid, i.euid, i.suid, i.fsuid, i.gid, i.egid, i.sgid, i.fsgid], [0, 5, 0, 5, 0, 1, 0, 1])
        XCTAssertEqual(i.groups, [2])
        c.egid = 300000
        XCTAssertThrowsError(try m.inside(c, pid: 7)) { e in
            XCTAssertTrue("\(e)".contains("egid 300000 is not in its namespace's gid map"), "\(e)")
        }
        XCTAssertEqual(try m.insideMountOptions("size=1024k,mode=750,uid=100000,gid=200000", mount: "/t"), "size=1024k,mode=750,uid=0,gid=0")
        XCTAssertThrowsError(try m.insideMountOptions("uid=5", mount: "/t"))
    }

    func testImageKinds() {
        XCTAssertEqual(ImageKind.userns.fileName(3), "userns-3.img")
        XCTAssertEqual(ImageKind.timens.fileName(9), "timens-9.img")
        XCTAssertEqual(ImageKind.parse(fileName: "timens-9.img")?.kind, .timens)
        XCTAssertEqual(ImageKind.userns.magic, 0x5547_4906)
        XCTAssertEqual(ImageKind.timens.magic, 0x4311_4433)
    }
}
