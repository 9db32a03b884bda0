import XCTest
import Glibc
import CKernel
@testable import Engine

/// Pty queues without a process: the tty-data entry keeps the line structure, and a pty
/// drained and refilled by cryo gives a reader the same reads as an untouched pty that went
/// through the same steps (echoes not doubled, lines, EOFs and the partial line kept).
final class TtyDataTests: XCTestCase {
    func testSlaveQueueRoundTripsThroughItsEntry() throws {
        var q = PtyQueues()
        q.lines = [(Array("one\n".utf8), false), ([], true), (Array("ab".utf8), true), (Array("x;".utf8), false)]
        q.partial = Array("par".utf8)
        var back = PtyQueues()
        try back.add(q.slaveEntry(id: 7))
        XCTAssertEqual(back.lines.map(\.bytes), q.lines.map(\.bytes))
        XCTAssertEqual(back.lines.map(\.eof), q.lines.map(\.eof))
        XCTAssertEqual(back.partial, q.partial)
        var bad = q.slaveEntry(id: 7)
        bad.lineEnd[0] = 99
        var empty = PtyQueues()
        XCTAssertThrowsError(try empty.add(bad))
    }

    func openPty() throws -> (Int32, Int32) {
        var name = [CChar](repeating: 0, count: 128)
        let m = ck_open_pty(&name, name.count)
        guard m >= 0 else { throw XCTSkip("no pty") }
        let s = open(String(cString: name), O_RDWR | O_NOCTTY)
        XCTAssertGreaterThanOrEqual(s, 0)
        return (m, s)
    }

    /// The same writes on any pty (cooked termios, echo on).
    func scenario(_ m: Int32, _ s: Int32) {
        let input = Array("one\rtwo\n\u{04}ab\u{04}q\u{16}\u{03}\u{16}\nz\npar\u{7f}t".utf8)
        _ = input.withUnsafeBytes { write(m, $0.baseAddress, $0.count) }
        usleep(100_000)
        _ = "out\n".withCString { write(s, $0, 4) }
        usleep(100_000)
    }

    /// Every read a reader gets: the slave's lines, the partial line once a \n ends it, the master.
    func reads(_ m: Int32, _ s: Int32) -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 8192)
        func drain(_ fd: Int32, _ tag: String) {
            while PtyQueueIO.revents(fd, POLLIN) & POLLIN != 0 {
                let n = read(fd, &buf, buf.count)
                guard n >= 0 else { return }
                out.append(tag + buf.prefix(n).map { String(format: "%02x", $0) }.joined())
            }
        }
        drain(s, "s:")
        _ = write(m, "\n", 1)
        usleep(100_000)
        drain(s, "s:")
        usleep(100_000)
        drain(m, "m:")
        return out
    }

    func testDrainedAndRefilledPtyReadsAsAnUntouchedOne() throws {
        let (rm, rs) = try openPty()
        defer { close(rm); close(rs) }
        scenario(rm, rs)
        let want = reads(rm, rs)
        XCTAssertGreaterThan(want.count, 5)

        let (m, s) = try openPty()
        defer { close(m); close(s) }
        scenario(m, s)
        let t = try Termios2.get(s)
        var q = PtyQueues()
        try PtyQueueIO.drainMaster(m, packet: false, into: &q)
        try PtyQueueIO.drainSlave(s, termios: t, into: &q)
        XCTAssertFalse(q.fromSlave.isEmpty)
        XCTAssertEqual(q.lines.count, 5)
        XCTAssertEqual(q.partial, Array("pat".utf8))
        XCTAssertNil(PtyQueueIO.refusal(q, termios: t, packet: false))
        try PtyQueueIO.refill(master: m, slave: s, termios: t, q)
        XCTAssertEqual(try Termios2.get(s).b.prefix(44), t.b.prefix(44), "termios put back")
        XCTAssertEqual(reads(m, s), want)
    }
}
