@testable import Engine
import XCTest

/// What the dump refuses about the tree's shape, before anything is written.
final class TreeChecksTests: XCTestCase {
    private func entry(_ pid: UInt32, ppid: UInt32, pgid: UInt32, sid: UInt32) -> Img_PstreeEntry {
        var e = Img_PstreeEntry()
        e.pid = pid; e.ppid = ppid; e.pgid = pgid; e.sid = sid
        return e
    }

    func testGroupWhoseLeaderIsGoneIsKept() throws {
        // zombie01's shape: 12 made group 12, forked 13 (zombie) and 14 as 10's children, and exited.
        let tree = [entry(10, ppid: 0, pgid: 10, sid: 10), entry(13, ppid: 10, pgid: 12, sid: 10), entry(14, ppid: 10, pgid: 12, sid: 10)]
        XCTAssertNoThrow(try TreeChecks.zombies(tree, zombies: [13], shellJob: false))
    }

    func testZombieInSessionWhoseLeaderIsGoneIsRefused() {
        let tree = [entry(10, ppid: 0, pgid: 10, sid: 10), entry(13, ppid: 10, pgid: 13, sid: 9)]
        XCTAssertThrowsError(try TreeChecks.zombies(tree, zombies: [13], shellJob: false)) { error in
            XCTAssertTrue("\(error)".contains("session 9"), "\(error)")
        }
        XCTAssertNoThrow(try TreeChecks.zombies(tree, zombies: [13], shellJob: true))
    }

    func testGoneLeadersGroupWithParentInAnotherSessionIsRefused() {
        // 11 called setsid after forking 13, whose group 12 is gone: no task of 13's session can make it.
        let tree = [entry(10, ppid: 0, pgid: 10, sid: 10), entry(11, ppid: 10, pgid: 11, sid: 11), entry(13, ppid: 11, pgid: 12, sid: 10)]
        XCTAssertThrowsError(try TreeChecks.zombies(tree, zombies: [], shellJob: false)) { error in
            XCTAssertTrue("\(error)".contains("group 12"), "\(error)")
        }
    }
}
