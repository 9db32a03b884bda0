import Foundation
import Glibc
import XCTest
import Engine

/// Trees: memory a forked child shares copy-on-write with its parent is in the image once,
/// and still shared after restore, so the next checkpoint is no bigger.
final class TreeImagesTests: XCTestCase {
    func testCopyOnWriteIsDumpedOnceAcrossGenerations() throws {
        let h = try CRHarness.make("TreeImagesTests")
        defer { h.remove() }
        let pid = try h.start("cow00")
        let tree = [pid] + ((try? ProcReader().allChildren(pid: pid)) ?? [])
        XCTAssertEqual(tree.count, 3, "cow00 runs a parent and two children")
        for gen in 1...2 {
            let images = h.dir + "/img-\(gen)"
            let (dc, dout) = try h.cryo(["dump", "-t", "\(pid)", "-D", images])
            guard dc == 0 else { kill(pid, SIGKILL); return XCTFail("dump \(gen): \(dout)") }
            // 32 MiB shared by three processes, one of which rewrote 1 MiB, plus the
            // processes' own small pages: far below the 96 MiB that copies would take.
            let bytes = try h.pagesBytes(images)
            XCTAssertGreaterThan(bytes, 33 << 20, "generation \(gen)")
            XCTAssertLessThan(bytes, 40 << 20, "generation \(gen): \(bytes) bytes of pages; copy-on-write memory dumped more than once")
            h.waitGone(tree)
            let (rc, rout) = try h.cryo(["restore", "-D", images, "-d"])
            XCTAssertEqual(rc, 0, "restore \(gen): \(rout)")
            guard rc == 0 else { return }
        }
        XCTAssertEqual(try h.stop(pid, name: "cow00"), "PASS")
    }
}
