import XCTest
@testable import ZDTMCore

final class CriuSpellingsTests: XCTestCase {
    func modes(_ f: (inout CriuSpellings) -> Void, explicit: [String] = []) throws -> [String] {
        var s = CriuSpellings(); f(&s); return try s.modes(explicit: explicit)
    }

    func testEachFlagPicksItsMode() throws {
        XCTAssertEqual(try modes { $0.pre = 3 }, ["pre"])
        XCTAssertEqual(try modes { $0.pre = 3; $0.snaps = true }, ["snaps"])
        XCTAssertEqual(try modes { $0.dedup = true }, ["dedup"])
        XCTAssertEqual(try modes { $0.pageServer = true }, ["page-server"])
        XCTAssertEqual(try modes { $0.lazyPages = true }, ["lazy"])
        XCTAssertEqual(try modes { $0.remoteLazyPages = true }, ["remote-lazy"])
        XCTAssertEqual(try modes { _ in }, [], "no flag: the suite's modes")
    }

    func testPreWithATransferAsksForIncrementalSteps() throws {
        var s = CriuSpellings(); s.pre = 2; s.pageServer = true
        XCTAssertEqual(try s.modes(explicit: []), ["page-server"])
        XCTAssertEqual(s.incremental, "pre")
        s.snaps = true
        XCTAssertEqual(s.incremental, "snaps")
        XCTAssertNil(CriuSpellings().incremental)
    }

    func testSnapsWithAnExplicitTransferModeOnlyAsksForSteps() throws {
        XCTAssertEqual(try modes({ $0.snaps = true }, explicit: ["lazy"]), ["lazy"])
        XCTAssertEqual(try modes({ $0.snaps = true }, explicit: ["remote-lazy", "plain"]), ["remote-lazy", "plain"])
        XCTAssertEqual(try modes({ $0.snaps = true }, explicit: ["plain"]), ["plain", "snaps"])
    }

    func testFlagsAddToExplicitModesWithoutRepeats() throws {
        XCTAssertEqual(try modes({ $0.snaps = true }, explicit: ["plain", "snaps"]), ["plain", "snaps"])
        XCTAssertEqual(try modes({ $0.pre = 2 }, explicit: ["plain"]), ["plain"], "--pre N with --mode only sets the count")
    }

    func testConflictsAreRefused() {
        XCTAssertThrowsError(try modes { $0.pageServer = true; $0.lazyPages = true })
        XCTAssertThrowsError(try modes { $0.snaps = true; $0.dedup = true })
    }

    func testFlavourListsSplitOnCommas() {
        XCTAssertEqual(CriuSpellings.flavours(["h,ns", "uns"]), ["h", "ns", "uns"])
        XCTAssertEqual(CriuSpellings.flavours(["h"]), ["h"])
    }
}
