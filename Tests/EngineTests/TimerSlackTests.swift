import XCTest
import Glibc
@testable import Engine

/// Reading a thread's default timer slack at dump leaves the thread as it was: its current
/// slack, and for a SCHED_FIFO thread its policy and priority (which the read leaves for a moment).
final class TimerSlackTests: XCTestCase {
    var child: Process?

    override func setUpWithError() throws {
        if geteuid() != 0 {
            print("TimerSlackTests: skipped, needs root for ptrace and SCHED_FIFO")
            throw XCTSkip("needs root")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sleep")
        p.arguments = ["30"]
        try p.run()
        child = p
        usleep(100_000)
    }

    override func tearDown() {
        if let p = child, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
    }

    func slack(_ pid: Int32) throws -> UInt64 {
        try XCTUnwrap(UInt64(try String(contentsOfFile: "/proc/\(pid)/timerslack_ns", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    func setSlack(_ pid: Int32, _ ns: UInt64) throws {
        try "\(ns)".write(toFile: "/proc/\(pid)/timerslack_ns", atomically: false, encoding: .utf8)
    }

    /// The default, as the kernel resets to it, from outside; the current slack put back.
    func outsideDefault(_ pid: Int32) throws -> UInt64 {
        let now = try slack(pid)
        try setSlack(pid, 0)
        let d = try slack(pid)
        try setSlack(pid, now)
        return d
    }

    func readFrozen(_ pid: Int32) throws -> (current: UInt64, default: UInt64) {
        let proc = ProcReader()
        let tree = try TreeFreezer.freeze(root: pid, proc: proc)
        defer { tree.release() }
        let remote = try Remote(tid: pid, maps: try proc.maps(pid: pid))
        defer { try? remote.finish() }
        return try TimerSlack.read(tid: pid, remote: remote, sched: try Scheduling.read(tid: pid))
    }

    func testFairThreadKeepsItsSlack() throws {
        let pid = try XCTUnwrap(child?.processIdentifier)
        try setSlack(pid, 123_457)
        let def = try outsideDefault(pid)
        XCTAssertNotEqual(def, 123_457)
        let got = try readFrozen(pid)
        XCTAssertEqual(got.current, 123_457)
        XCTAssertEqual(got.default, def)
        XCTAssertEqual(try slack(pid), 123_457, "the read must put the current slack back")
        XCTAssertEqual(try outsideDefault(pid), def)
    }

    func testFifoThreadKeepsItsPolicy() throws {
        let pid = try XCTUnwrap(child?.processIdentifier)
        try setSlack(pid, 222_223)
        let def = try outsideDefault(pid)
        try TimerSlack.setPolicy(pid, TimerSlack.fifo | Scheduling.resetOnFork, 3)
        XCTAssertEqual(try slack(pid), 0, "a SCHED_FIFO thread has no slack")
        let before = try Scheduling.read(tid: pid)
        let got = try readFrozen(pid)
        XCTAssertEqual(got.current, 0)
        XCTAssertEqual(got.default, def)
        XCTAssertEqual(try Scheduling.read(tid: pid), before, "policy, priority and SCHED_RESET_ON_FORK put back")
        XCTAssertEqual(try slack(pid), 0)
        // Leaving FIFO shows the default the thread kept.
        try TimerSlack.setPolicy(pid, 0, 0)
        XCTAssertEqual(try slack(pid), def)
    }
}
