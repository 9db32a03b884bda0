import XCTest
@testable import Engine

final class CowMapTests: XCTestCase {
    func r(_ a: UInt64, _ b: UInt64) -> PageRun { PageRun(start: a * 4096, end: b * 4096) }

    func testSplitByMarkedRuns() {
        let runs = [r(0, 10), r(20, 30), r(40, 41)]
        let marked = [r(2, 4), r(8, 22), r(25, 26), r(29, 45)]
        let (out, ins) = PageRuns.partition(runs, by: marked)
        XCTAssertEqual(out, [r(0, 2), r(4, 8), r(22, 25), r(26, 29)])
        XCTAssertEqual(ins, [r(2, 4), r(8, 10), r(20, 22), r(25, 26), r(29, 30), r(40, 41)])
        // Every page lands on exactly one side.
        let pages = { (l: [PageRun]) in l.reduce(UInt64(0)) { $0 + $1.pageCount } }
        XCTAssertEqual(pages(out) + pages(ins), pages(runs))
    }

    func testSplitWithNothingMarkedOrEverything() {
        let runs = [r(0, 4), r(8, 9)]
        XCTAssertEqual(PageRuns.partition(runs, by: []).outside, runs)
        XCTAssertEqual(PageRuns.partition(runs, by: [r(0, 100)]).inside, runs)
        XCTAssertEqual(PageRuns.normalize([r(5, 6), r(0, 2), r(1, 3), r(3, 4)]), [r(0, 4), r(5, 6)])
    }
}
