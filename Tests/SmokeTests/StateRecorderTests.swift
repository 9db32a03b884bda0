import Engine
import Foundation
import Glibc
import XCTest
@testable import ZDTMCore

/// The recorder reads trees that change by themselves. A process caught exiting (its files,
/// fs and mm already released) must count as gone, never as a live process that lost its
/// cwd and fds; a live process that really lost them must still be caught.
final class StateRecorderTests: XCTestCase {
    /// A /proc of our own making, so the exiting state is exact rather than a race to win.
    struct FakeProc {
        let root: String
        init() throws {
            root = NSTemporaryDirectory() + "fakeproc-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        }
        func write(_ rel: String, _ text: String) throws {
            let p = root + "/" + rel
            try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: p, atomically: false, encoding: .utf8)
        }
        func link(_ rel: String, to target: String) throws {
            let p = root + "/" + rel
            try FileManager.default.createDirectory(atPath: (p as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            XCTAssertEqual(symlink(target, p), 0)
        }
        /// stat line: state, ppid, flags (field 9), starttime (field 22).
        static func stat(_ pid: Int32, _ comm: String, state: String = "S", ppid: Int32, flags: UInt32, start: UInt64 = 1000) -> String {
            var f = ["\(pid)", "(\(comm))", state, "\(ppid)", "100", "100", "0", "-1", "\(flags)"]
            f += Array(repeating: "0", count: 12)   // fields 10-21
            f.append("\(start)")                    // 22
            f += Array(repeating: "0", count: 30)   // 23-52
            return f.joined(separator: " ") + "\n"
        }
        /// A process with one thread; `live` gives it a cwd, fd 0 and a mapping as a live
        /// process has; without it they are gone, as once exit_files/exit_fs/exit_mm ran.
        func process(_ pid: Int32, ppid: Int32, flags: UInt32, children: [Int32] = [], live: Bool) throws {
            let st = Self.stat(pid, "w", ppid: ppid, flags: flags)
            try write("\(pid)/stat", st)
            try write("\(pid)/task/\(pid)/stat", st)
            let status = "Name:\tw\nState:\tS (sleeping)\nTgid:\t\(pid)\nPid:\t\(pid)\nPPid:\t\(ppid)\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000004002\n"
            try write("\(pid)/status", status)
            try write("\(pid)/task/\(pid)/status", status)
            try write("\(pid)/task/\(pid)/children", children.map(String.init).joined(separator: " ") + (children.isEmpty ? "" : " "))
            try FileManager.default.createDirectory(atPath: "\(root)/\(pid)/fd", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: "\(root)/\(pid)/fdinfo", withIntermediateDirectories: true)
            if live {
                try link("\(pid)/cwd", to: "/tmp/case")
                try link("\(pid)/fd/0", to: "/dev/null")
                try write("\(pid)/fdinfo/0", "pos:\t0\nflags:\t0100000\nmnt_id:\t20\nino:\t5\n")
                try write("\(pid)/maps", "55d000000000-55d000001000 r-xp 00000000 00:00 0 \n")
            } else {
                try write("\(pid)/maps", "")
            }
        }
    }

    static let pfExiting: UInt32 = 0x4
    static let ordinary: UInt32 = 0x400100  // PF_RANDOMIZE | PF_FORKNOEXEC, as a forked child shows

    func testAnExitingChildCountsAsGoneNotAsChanged() throws {
        let before = try FakeProc()
        try before.process(100, ppid: 1, flags: Self.ordinary, children: [101], live: true)
        try before.process(101, ppid: 100, flags: Self.ordinary, live: true)
        let a = try StateRecorder.record(root: 100, proc: ProcReader(root: before.root))
        XCTAssertEqual(a.pids, [100, 101])
        XCTAssertEqual(a.processes[1].cwd, "/tmp/case")

        // The same child, caught after exit_files and exit_fs: no cwd link, no fds, no maps.
        let after = try FakeProc()
        try after.process(100, ppid: 1, flags: Self.ordinary, children: [101], live: true)
        try after.process(101, ppid: 100, flags: Self.ordinary | Self.pfExiting, live: false)
        let b = try StateRecorder.record(root: 100, proc: ProcReader(root: after.root))
        XCTAssertEqual(b.pids, [100], "an exiting process is not recorded as a live one")
        // fork00's ignore list: the tree may change, what is there must not.
        XCTAssertEqual(StateDiff.compare(a, b, ignore: [.tree, .threads, .sigmask, .maps]), [])
    }

    func testALiveChildThatLostItsCwdAndFdsIsStillCaught() throws {
        let before = try FakeProc()
        try before.process(100, ppid: 1, flags: Self.ordinary, children: [101], live: true)
        try before.process(101, ppid: 100, flags: Self.ordinary, live: true)
        let a = try StateRecorder.record(root: 100, proc: ProcReader(root: before.root))

        // Not exiting, yet its fd is gone and its cwd moved: a real change.
        let after = try FakeProc()
        try after.process(100, ppid: 1, flags: Self.ordinary, children: [101], live: true)
        try after.process(101, ppid: 100, flags: Self.ordinary, live: false)
        try after.link("101/cwd", to: "/tmp/case (deleted)")
        let b = try StateRecorder.record(root: 100, proc: ProcReader(root: after.root))
        XCTAssertEqual(b.pids, [100, 101])
        XCTAssertEqual(StateDiff.compare(a, b, ignore: [.tree, .threads, .sigmask, .maps]),
                       ["pid 101: cwd /tmp/case -> /tmp/case (deleted)", "pid 101: fd 0 (/dev/null) is gone"])
    }

    func testAPidReusedWhileReadIsNotTheSameProcess() throws {
        // Only the second look at stat differs (a new process took the pid mid-read): the
        // recorder cannot tell from files alone, so it compares start times around its reads.
        let p = try FakeProc()
        try p.process(100, ppid: 1, flags: Self.ordinary, live: true)
        let st = try ProcReader(root: p.root).stat(pid: 100)
        XCTAssertEqual(st.starttime, 1000)
        XCTAssertFalse(st.isExiting)
        try p.write("100/stat", FakeProc.stat(100, "w", ppid: 1, flags: Self.ordinary | Self.pfExiting))
        try p.write("100/task/100/stat", FakeProc.stat(100, "w", ppid: 1, flags: Self.ordinary | Self.pfExiting))
        XCTAssertTrue(try ProcReader(root: p.root).stat(pid: 100).isExiting)
        XCTAssertTrue(ProcReader(root: p.root).isExiting(pid: 100))
        // A leader that exited alone while a thread runs on is not an exiting process.
        try p.write("100/task/101/stat", FakeProc.stat(101, "w", ppid: 1, flags: Self.ordinary))
        XCTAssertFalse(ProcReader(root: p.root).isExiting(pid: 100))
    }

    /// Real processes: a shell forking short-lived children that exec and exit all the time.
    /// Every pair of records must agree on what both saw (cwd, fds), as fork00's run asks.
    func testATreeThatForksAndExitsAllTheTimeRecordsClean() throws {
        let dir = NSTemporaryDirectory() + "recorder-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sh = try Subprocess.spawn("/bin/sh", ["-c", "exec 7</dev/null; while :; do /bin/true & /bin/sh -c 'exit 3' & wait; done"], cwd: dir)
        defer { kill(sh, SIGKILL); _ = try? Subprocess.wait(sh, timeout: 10) }
        usleep(50_000)
        let proc = ProcReader()
        let ignore: Set<StatePart> = [.tree, .threads, .sigmask, .maps]
        var first = try StateRecorder.record(root: sh, proc: proc)
        var problems: [String] = []
        var children = 0
        for _ in 0..<400 {
            let next = try StateRecorder.record(root: sh, proc: proc)
            children += next.pids.count - 1
            problems += StateDiff.compare(first, next, ignore: ignore)
            first = next
        }
        XCTAssertEqual(problems, [], "records of a healthy tree differ")
        XCTAssertGreaterThan(children, 0, "the shell's children were never seen: the test proves nothing")
    }

    /// A live process whose fd is closed and whose cwd is removed, for real.
    func testARealProcessThatLosesItsFdAndCwdIsCaught() throws {
        let dir = NSTemporaryDirectory() + "recorder-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let gate = dir + "/gate"
        XCTAssertEqual(mkfifo(gate, 0o600), 0)
        // Holds fd 7 in DIR/sub until the gate opens, then closes it and waits on.
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        let sh = try Subprocess.spawn("/bin/sh", ["-c", "exec 7</dev/null; read x < \(gate); exec 7<&-; exec sleep 60"], cwd: dir + "/sub")
        defer { kill(sh, SIGKILL); _ = try? Subprocess.wait(sh, timeout: 10) }
        var a: VisibleState?
        for _ in 0..<200 {
            a = try StateRecorder.record(root: sh, proc: ProcReader())
            if a?.processes.first?.fds.contains(where: { $0.fd == 7 }) == true { break }
            usleep(10_000)
        }
        let before = try XCTUnwrap(a)
        XCTAssertTrue(before.processes[0].fds.contains { $0.fd == 7 })
        let w = open(gate, O_WRONLY); XCTAssertGreaterThanOrEqual(w, 0)
        _ = "go\n".withCString { Glibc.write(w, $0, 3) }; close(w)
        XCTAssertEqual(rmdir(dir + "/sub"), 0)
        var diff: [String] = []
        for _ in 0..<200 {
            let after = try StateRecorder.record(root: sh, proc: ProcReader())
            diff = StateDiff.compare(before, after, ignore: [.tree, .maps, .threads, .sigmask])
            if diff.contains(where: { $0.contains("fd 7") }) { break }
            usleep(10_000)
        }
        XCTAssertTrue(diff.contains { $0.hasPrefix("pid \(sh): fd 7 (/dev/null) is gone") }, "\(diff)")
        XCTAssertTrue(diff.contains { $0.contains("cwd \(dir)/sub -> \(dir)/sub (deleted)") }, "\(diff)")
    }
}
