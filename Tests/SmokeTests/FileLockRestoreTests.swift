import Foundation
import Glibc
import XCTest
@testable import Engine

extension RestoreErrorsTests {
    /// A lock someone else took after the dump is not waited for: the restore fails, naming
    /// the lock, and leaves none of the tree behind.
    func testRestoreOntoATakenLockLeavesNothing() throws {
        let pid = try start("lock00")
        let images = dir + "/lockimg"
        var (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", images, "--file-locks"])
        XCTAssertEqual(code, 0, out)
        let d = try ImageDirectory(path: images)
        let tree = try d.read(.pstree, as: Img_PstreeEntry.self).map { Int32($0.pid) }
        XCTAssertEqual(tree.count, 4, "lock00 and its three waiters")
        for _ in 0..<3000 where tree.contains(where: { kill($0, 0) == 0 }) {
            var st: Int32 = 0
            for p in tree { _ = waitpid(p, &st, WNOHANG) }  // the waiters are ours once their parent is gone
            usleep(1000)
        }
        let path = try XCTUnwrap(try d.read(.files, as: Img_FileEntry.self).first { $0.hasReg && $0.reg.name.hasSuffix("/lock00.flock") }).reg.name
        let mine = open(path, O_RDWR)
        XCTAssertGreaterThanOrEqual(mine, 0, path)
        defer { close(mine) }
        XCTAssertEqual(flock(mine, LOCK_EX | LOCK_NB), 0, "the dumped tree is gone: its flock is free")
        (code, out) = try cryo(["restore", "-D", images, "-d"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains(path) && out.contains("flock LOCK_EX") && out.contains("another process holds a conflicting lock now"), out)
        for _ in 0..<3000 where tree.contains(where: { kill($0, 0) == 0 }) {
            var st: Int32 = 0
            for p in tree { _ = waitpid(p, &st, WNOHANG) }  // the waiters are ours once their parent is gone
            usleep(1000)
        }
        for p in tree { XCTAssertNotEqual(kill(p, 0), 0, "a failed restore leaves no process (pid \(p))") }
    }
}
