import XCTest
@testable import Engine

final class ProcTimersTests: XCTestCase {
    func testSampleWithSignalNoneAndThreadTimers() throws {
        let text = """
        ID: 0
        signal: 10/000000000000002a
        notify: signal/pid.4242
        ClockID: 1
        ID: 1
        signal: 14/0000000000000000
        notify: none/pid.4242
        ClockID: 0
        ID: 3
        signal: 12/0000000000000000
        notify: signal/tid.4250
        ClockID: 1

        """
        let t = try ProcTimersParser.parse(text, path: "timers")
        XCTAssertEqual(t.count, 3)
        XCTAssertEqual(t[0], ProcPosixTimer(id: 0, signal: 10, sivalPtr: 42, notify: 0, notifyTid: 0, clock: 1))
        XCTAssertEqual(t[1].notify, 1)
        XCTAssertEqual(t[2].id, 3)
        XCTAssertEqual(t[2].notify, 4)
        XCTAssertEqual(t[2].notifyTid, 4250)
    }

    func testMalformedLinesNameTheLine() {
        XCTAssertThrowsError(try ProcTimersParser.parse("ID: 0\nsignal: x/y\n", path: "t")) { e in
            guard case ProcError.malformed(_, let line, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(line, 2)
        }
        XCTAssertThrowsError(try ProcTimersParser.parse("signal: 10/0\n", path: "t"))
    }

    func testOwnTimersAreListed() throws {
        var id: timer_t? = nil
        var sev = sigevent()
        sev.sigev_notify = Int32(SIGEV_NONE)
        XCTAssertEqual(timer_create(CLOCK_MONOTONIC, &sev, &id), 0)
        defer { timer_delete(id) }
        let mine = try ProcReader().posixTimers(pid: getpid())
        XCTAssertTrue(mine.contains { $0.notify == 1 && $0.clock == CLOCK_MONOTONIC }, "\(mine)")
    }
}
