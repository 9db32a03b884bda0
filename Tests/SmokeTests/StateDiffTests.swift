import XCTest
@testable import ZDTMCore

final class StateDiffTests: XCTestCase {
    func proc(_ pid: Int32, ppid: Int32 = 1) -> VisibleState.Process {
        VisibleState.Process(
            pid: pid, ppid: ppid, pgid: 100, sid: 100, comm: "w",
            threads: [.init(tid: pid, sigBlk: 0x4000)],
            maps: [.init(start: 0x7f00_0000_0000, end: 0x7f00_0000_1000, perms: "rw-p", offset: 0, path: ""),
                   .init(start: 0x5500_0000_0000, end: 0x5500_0000_2000, perms: "r-xp", offset: 0x1000, path: "/bin/w")],
            fds: [.init(fd: 0, target: "/dev/null", flags: 0o100000), .init(fd: 3, target: "/x", flags: 0o2)],
            cwd: "/tmp/case", sigIgn: 0x1000, sigCgt: 0x4002)
    }
    func state(_ p: [VisibleState.Process]) -> VisibleState { VisibleState(root: p[0].pid, processes: p) }

    func testAChildThatDiedBetweenRecordsIsATreeChangeOnly() {
        let a = state([proc(100), proc(101, ppid: 100)])
        var b = a
        b.processes[1] = VisibleState.Process(pid: 101, ppid: 100, pgid: 100, sid: 100, comm: "w", cwd: "", isZombie: true)
        XCTAssertEqual(StateDiff.compare(a, b), ["pid 101: exited (a zombie now)"])
        XCTAssertEqual(StateDiff.compare(a, b, ignore: [.tree]), [], "a zombie's empty cwd and fds are not a live process's loss")
        XCTAssertEqual(StateDiff.compare(b, a), ["pid 101: was a zombie, is alive now"])
        // A zombie that stays one compares as before: its place in the tree.
        var c = b
        c.processes[1].pgid = 7
        XCTAssertEqual(StateDiff.compare(b, c), ["pid 101: pgid 100 -> 7"])
    }

    func testIdenticalIsClean() {
        let s = state([proc(100), proc(101, ppid: 100)])
        XCTAssertEqual(StateDiff.compare(s, s), [])
    }

    func testRootParentMayChangeButChildParentMayNot() {
        let a = state([proc(100), proc(101, ppid: 100)])
        let b = state([proc(100, ppid: 7), proc(101, ppid: 1)])
        XCTAssertEqual(StateDiff.compare(a, b), ["pid 101: ppid 100 -> 1"])
    }

    func testMapsChanges() {
        let a = state([proc(100)])
        var b = a
        b.processes[0].maps[0].perms = "r--p"
        b.processes[0].maps[1].path = "/bin/other"
        b.processes[0].maps.append(.init(start: 0x10000, end: 0x20000, perms: "rw-p", offset: 0, path: "[heap]"))
        XCTAssertEqual(StateDiff.compare(a, b), [
            "pid 100: map 7f0000000000-7f0000001000 rw-p changed to r--p",
            "pid 100: map 550000000000-550000002000 /bin/w changed to /bin/other",
            "pid 100: map 10000-20000 rw-p 0 [heap] appeared",
        ])
        var c = a
        c.processes[0].maps.removeFirst()
        XCTAssertEqual(StateDiff.compare(a, c), ["pid 100: map 7f0000000000-7f0000001000 rw-p 0 is gone"])
        XCTAssertEqual(StateDiff.compare(a, b, ignore: [.maps]), [])
    }

    func testFdChanges() {
        let a = state([proc(100)])
        var b = a
        b.processes[0].fds[1] = .init(fd: 3, target: "/y", flags: 0o2002)
        b.processes[0].fds.append(.init(fd: 4, target: "pipe:[5]", flags: 0))
        XCTAssertEqual(StateDiff.compare(a, b), [
            "pid 100: fd 3: target /x changed to /y",
            "pid 100: fd 3: flags 02 changed to 02002",
            "pid 100: fd 4 (pipe:[5]) appeared",
        ])
        XCTAssertEqual(StateDiff.compare(a, b, ignore: [.fdFlags]).count, 2)
        b.processes[0].fds.removeFirst()
        XCTAssertTrue(StateDiff.compare(a, b).contains("pid 100: fd 0 (/dev/null) is gone"))
    }

    /// Pipes and sockets get new inodes on restore; only a change in which fds share one counts.
    func testAnonymousInodesCompareBySharing() {
        var a = state([proc(100)])
        a.processes[0].fds += [.init(fd: 4, target: "pipe:[10]", flags: 0), .init(fd: 5, target: "pipe:[10]", flags: 1),
                               .init(fd: 6, target: "socket:[11]", flags: 2), .init(fd: 7, target: "pipe:[12]", flags: 0)]
        var b = a
        b.processes[0].fds[2].target = "pipe:[20]"; b.processes[0].fds[3].target = "pipe:[20]"
        b.processes[0].fds[4].target = "socket:[21]"; b.processes[0].fds[5].target = "pipe:[22]"
        XCTAssertEqual(StateDiff.compare(a, b), [])
        // Two ends of one pipe now on different pipes.
        var split = b
        split.processes[0].fds[3].target = "pipe:[23]"
        XCTAssertEqual(StateDiff.compare(a, split).count, 1, "\(StateDiff.compare(a, split))")
        // Two different pipes merged into one.
        var merged = b
        merged.processes[0].fds[5].target = "pipe:[20]"
        XCTAssertEqual(StateDiff.compare(a, merged).count, 1, "\(StateDiff.compare(a, merged))")
        // A pipe that became a socket is a changed target.
        var kind = b
        kind.processes[0].fds[5].target = "socket:[22]"
        XCTAssertEqual(StateDiff.compare(a, kind), ["pid 100: fd 7: target pipe:[12] changed to socket:[22]"])
    }

    func testThreadsSignalsTreeCwd() {
        let a = state([proc(100), proc(101, ppid: 100)])
        var b = state([proc(100), proc(102, ppid: 100)])
        b.processes[0].threads.append(.init(tid: 103, sigBlk: 0))
        b.processes[0].threads[0].sigBlk = 0
        b.processes[0].sigIgn = 0
        b.processes[0].sigCgt = 0x4000
        b.processes[0].cwd = "/"
        b.processes[0].pgid = 5
        XCTAssertEqual(StateDiff.compare(a, b), [
            "tree: process 101 (w) is gone",
            "tree: process 102 (w) appeared",
            "pid 100: pgid 100 -> 5",
            "pid 100: cwd /tmp/case -> /",
            "pid 100: threads 1 -> 2 (tids [100] -> [100,103])",
            "pid 100: ignored signals 0x1000 -> 0x0",
            "pid 100: caught signals 0x4002 -> 0x4000",
            "pid 100: tid 100: blocked signals 0x4000 -> 0x0",
        ])
        XCTAssertEqual(StateDiff.compare(a, b, ignore: [.tree, .cwd, .threads, .sigmask]), [])
    }
}
