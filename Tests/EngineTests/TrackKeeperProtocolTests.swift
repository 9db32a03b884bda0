import CKernel
import Foundation
import Glibc
import XCTest
@testable import Engine

/// The keeper's protocol against a keeper loop on a thread of this process: parcels keep their
/// fds and ranges, are keyed by pid + start time, a stale or foreign parcel is refused, garbage
/// costs the sender its connection only, and the keeper leaves once the last parcel is taken.
final class TrackKeeperProtocolTests: XCTestCase {
    func startKeeper(_ name: String, idle: Double) throws -> (thread: Thread, result: () -> String?) {
        let lfd = try XCTUnwrap(try TrackKeeper.bindListening(name))
        final class Box: @unchecked Sendable { var why: String?; let lock = NSLock() }
        let box = Box()
        let t = Thread {
            let why = TrackKeeperServer(listenFd: lfd, name: name, idleSeconds: idle).run()
            box.lock.lock(); box.why = why; box.lock.unlock()
        }
        t.start()
        return (t, { box.lock.lock(); defer { box.lock.unlock() }; return box.why })
    }

    func wait(for result: () -> String?, seconds: Double) -> String? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline { if let r = result() { return r }; usleep(10_000) }
        return nil
    }

    func testPutTakeListAndLeaveWhenEmpty() throws {
        let name = "cryo-unit-keeper.\(getpid()).1"
        let (_, result) = try startKeeper(name, idle: 30)
        let me = getpid(), start = try ProcReader().stat(pid: me).starttime
        var p: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&p), 0)
        defer { close(p[0]); close(p[1]) }
        let ranges = [PageRun(start: 0x1000, end: 0x3000), PageRun(start: 0x10000, end: 0x20000)]
        do {
            let c = try XCTUnwrap(try TrackKeeperClient.connect(name: name))
            XCTAssertTrue(try c.put(TrackParcel(pid: me, startTime: start, backend: .uffdWriteProtect, fds: [p[1]], armed: ranges)))
            // Not the process that runs under this pid: refused and dropped.
            XCTAssertFalse(try c.put(TrackParcel(pid: me, startTime: start + 1, backend: .uffdWriteProtect, fds: [], armed: [])))
        }
        let l = try XCTUnwrap(try TrackKeeperClient.connect(name: name)).list()
        XCTAssertEqual(l.keeperPid, getpid())
        XCTAssertEqual(l.tracked.map(\.pid), [me])
        XCTAssertEqual(l.tracked.first?.armed, ranges)
        XCTAssertEqual(l.tracked.first?.armedPages, 2 + 16)
        XCTAssertNil(result(), "the keeper holds a parcel: it stays")

        // Garbage closes that connection only.
        let raw = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0)
        var (a, len) = TrackKeeper.address(name)
        XCTAssertEqual(withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(raw, $0, len) } }, 0)
        XCTAssertEqual(send(raw, "nonsense-nonsense", 17, 0), 17)
        var b = [UInt8](repeating: 0, count: 64)
        XCTAssertLessThanOrEqual(recv(raw, &b, 64, 0), 0, "no reply to garbage, the connection is closed")
        close(raw)

        var c: TrackKeeperClient? = try XCTUnwrap(try TrackKeeperClient.connect(name: name))
        XCTAssertEqual(try c?.take([(me + 1_000_000, start)]).count, 0, "nothing for another pid")
        let got = try c?.take([(me, start)]) ?? []
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.armed, ranges)
        XCTAssertEqual(got.first?.fds.count, 1)
        if let f = got.first?.fds.first {
            XCTAssertEqual(write(f, "k", 1), 1)
            var ch: UInt8 = 0
            XCTAssertEqual(read(p[0], &ch, 1), 1)
            XCTAssertEqual(ch, UInt8(ascii: "k"), "the fd that comes back is the one put in")
        }
        XCTAssertEqual(try c?.take([(me, start)]).count, 0, "taken means gone from the keeper")
        // Put back, then asked for by a process with that pid but another start time: stale, dropped.
        XCTAssertTrue(try c?.put(got[0]) ?? false)
        got.forEach { $0.closeFds() }
        XCTAssertEqual(try c?.take([(me, start + 1)]).count, 0)
        XCTAssertEqual(try c?.list().tracked.count, 0, "the stale parcel is gone")
        XCTAssertNil(result(), "a run is still connected")
        c = nil
        XCTAssertEqual(wait(for: result, seconds: 5), "nothing left to track")
    }

    func testEmptyKeeperWithNoRunLeaves() throws {
        let name = "cryo-unit-keeper.\(getpid()).2"
        let (_, result) = try startKeeper(name, idle: 30)
        do {
            let c = try XCTUnwrap(try TrackKeeperClient.connect(name: name))
            XCTAssertEqual(try c.list().tracked.count, 0)
        }
        XCTAssertNil(wait(for: result, seconds: 0.5), "listing alone (cryo track) does not end a keeper")
        do {
            let c = try XCTUnwrap(try TrackKeeperClient.connect(name: name))
            XCTAssertEqual(try c.take([(getpid(), 1)]).count, 0)
        }
        XCTAssertEqual(wait(for: result, seconds: 5), "nothing left to track")
        XCTAssertNil(try TrackKeeperClient.connect(name: name), "nothing answers on the name any more")
    }

    func testIdleKeeperDropsEverything() throws {
        let name = "cryo-unit-keeper.\(getpid()).3"
        let (_, result) = try startKeeper(name, idle: 1)
        var p: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&p), 0)
        defer { close(p[0]) }
        do {
            let c = try XCTUnwrap(try TrackKeeperClient.connect(name: name))
            XCTAssertTrue(try c.put(TrackParcel(pid: getpid(), startTime: try ProcReader().stat(pid: getpid()).starttime,
                                                backend: .uffdWriteProtect, fds: [p[1]], armed: [])))
            close(p[1])
        }
        XCTAssertEqual(wait(for: result, seconds: 10), "idle for 1 s: dropped the tracking of 1 process(es)")
        // Its copy of the write end is closed: the pipe has no writer left.
        var ch: UInt8 = 0
        XCTAssertEqual(read(p[0], &ch, 1), 0)
    }
}
