import XCTest
@testable import Engine

/// Which propagation a dump refuses and in which order a restore joins the groups again
/// (MountPropagation), on mountinfo as the kernel shows it.
final class MountPropagationTests: XCTestCase {
    func parse(_ s: String) throws -> [ProcMount] { try ProcMountInfoParser.parse(s, source: "test") }
    func refuse(_ m: ProcMount, _ why: String) -> Error { NamespaceError.restore(kind: "mnt", reason: "mount \(m.mountId) \(why)") }

    let tree = """
    1 0 0:40 / / rw - tmpfs r rw
    2 1 0:41 / /share rw shared:7 - tmpfs s rw
    3 1 0:41 /sub /subpeer rw shared:7 - tmpfs s rw
    4 1 0:41 / /slave rw master:7 - tmpfs s rw
    5 1 0:41 / /ss rw shared:9 master:7 - tmpfs s rw
    6 1 0:41 / /ssp rw shared:9 master:7 - tmpfs s rw
    7 1 0:41 / /priv rw - tmpfs s rw

    """

    func testGroupsOfTheTreeAreAcceptedAndMastersComeFirst() throws {
        let ms = try parse(tree)
        XCTAssertNoThrow(try MountPropagation.check(ms, outside: [], reachable: { _ in false }, refuse: refuse))
        // Slaves listed before their master in the images still come after it.
        let entries = [4, 5, 6, 1, 2, 3, 7].map { id in MountNamespace.entry(ms.first { $0.mountId == id }!) }
        let groups = MountPropagation.groups(entries)
        XCTAssertEqual(groups.map { [$0.shared, $0.master] }, [[7, 0], [0, 7], [9, 7]])
        XCTAssertEqual(groups[0].members.map(\.mntID), [2, 3])
        XCTAssertEqual(groups[0].first.mntID, 2, "the widest root is the one the others copy from")
        XCTAssertEqual(groups[2].members.map(\.mntID), [5, 6])
    }

    func testPeersWhoseRootsDoNotNestAreRefused() throws {
        let ms = try parse("""
        1 0 0:40 / / rw - tmpfs r rw
        2 1 0:41 /a /a rw shared:7 - tmpfs s rw
        3 1 0:41 /b /b rw shared:7 - tmpfs s rw

        """)
        XCTAssertThrowsError(try MountPropagation.check(ms, outside: [], reachable: { _ in false }, refuse: refuse)) {
            XCTAssertTrue("\($0)".contains("mount 3 is in peer group 7 with mount 2 at /a, whose root /a does not hold its root"), "\($0)")
        }
    }

    func testPeerOfAnOutsideMountIsRefused() throws {
        let ms = try parse(tree)
        let host = try parse("1 0 0:41 / /srv rw shared:7 - tmpfs s rw\n")
        XCTAssertThrowsError(try MountPropagation.check(ms, outside: host, reachable: { _ in true }, refuse: refuse)) {
            XCTAssertTrue("\($0)".contains("mount 2 is a peer of group 7 of cryo's namespace"), "\($0)")
        }
    }

    func testSlaveOfAnOutsideGroupNeedsAReachableMaster() throws {
        let ms = try parse("""
        1 0 0:40 / / rw - tmpfs r rw
        2 1 0:41 / /x rw master:5 - tmpfs x rw

        """)
        XCTAssertNoThrow(try MountPropagation.check(ms, outside: [], reachable: { $0.mountId == 2 }, refuse: refuse))
        XCTAssertThrowsError(try MountPropagation.check(ms, outside: [], reachable: { _ in false }, refuse: refuse)) {
            XCTAssertTrue("\($0)".contains("mount 2 is a slave of peer group 5 outside the tree"), "\($0)")
        }
        // In a container, a slave named external has its master where the restore binds it from.
        let kinds = try MountTree.classify(ms, host: [], externals: ["/x": "ext"], pid: 7, inode: 9)
        XCTAssertEqual(kinds[2], .external(key: "ext"))
    }
}
