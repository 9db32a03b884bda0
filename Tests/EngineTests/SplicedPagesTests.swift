import XCTest
@testable import Engine

/// Which pages a dump splices by reference and which it copies: the page the kernel writes
/// while the task runs the vmsplice loop (its rseq area) is copied, in its place in the order.
final class SplicedPagesTests: XCTestCase {
    func run(_ a: UInt64, _ b: UInt64) -> PageRun { PageRun(start: a * 4096, end: b * 4096) }

    func testRseqPageIsCopiedInOrder() {
        let batches: [(runs: [PageRun], readable: Bool)] = [([run(0, 2), run(4, 10), run(12, 13)], true), ([run(20, 21)], false), ([run(30, 31)], true)]
        let out = SplicedPages.sparing(batches, run(6, 7))
        XCTAssertEqual(out.map(\.readable), [true, false, true, false, true])
        XCTAssertEqual(out.map(\.runs), [[run(0, 2), run(4, 6)], [run(6, 7)], [run(7, 10), run(12, 13)], [run(20, 21)], [run(30, 31)]])
        // Every byte still there, once, in the same order.
        XCTAssertEqual(out.flatMap(\.runs).reduce(0) { $0 + $1.length }, batches.flatMap(\.runs).reduce(0) { $0 + $1.length })
    }

    func testSparedRangeAtTheEdgesOrOutside() {
        let batches: [(runs: [PageRun], readable: Bool)] = [([run(0, 4)], true)]
        XCTAssertEqual(SplicedPages.sparing(batches, run(0, 1)).map(\.runs), [[run(0, 1)], [run(1, 4)]])
        XCTAssertEqual(SplicedPages.sparing(batches, run(3, 5)).map(\.runs), [[run(0, 3)], [run(3, 4)]])
        XCTAssertEqual(SplicedPages.sparing(batches, run(8, 9)).map(\.runs), [[run(0, 4)]])
        XCTAssertEqual(SplicedPages.sparing(batches, nil).map(\.runs), [[run(0, 4)]])
        XCTAssertEqual(SplicedPages.sparing(batches, run(0, 4)).map(\.readable), [false])
    }

    /// A task that cannot be asked (gone, not traced) spares nothing and fails nothing.
    func testNoTaskSparesNothing() throws {
        XCTAssertNil(SplicedPages.kernelWritten(tid: 1 << 22))  // no such task: nothing to spare, no error
    }
}
