import XCTest
import Glibc
@testable import Engine

/// The lock lines of fdinfo and /proc/locks, and what the dump makes of them.
final class FileLockTests: XCTestCase {
    func testLockLinesParse() throws {
        let info = try ProcFdInfoParser.parse("""
            pos:\t0
            flags:\t02100002
            mnt_id:\t27
            ino:\t16556053
            lock:\t1: POSIX  ADVISORY  WRITE 24408 fe:00:16556053 5 14
            lock:\t2: POSIX  ADVISORY  READ 24408 fe:00:16556053 100 EOF

            """, source: "fdinfo")
        XCTAssertEqual(info.locks.count, 2)
        XCTAssertEqual(info.locks[0], ProcFileLock(kind: "POSIX", mode: "ADVISORY", type: "WRITE", pid: 24408, devMajor: 0xfe, devMinor: 0,
                                                   inode: 16556053, start: 5, end: 14, text: "1: POSIX ADVISORY WRITE 24408 fe:00:16556053 5 14"))
        XCTAssertNil(info.locks[1].end)

        let all = try ProcLocksParser.parse("""
            1: LEASE  ACTIVE    WRITE 10371 fe:00:16556063 0 EOF
            2: OFDLCK ADVISORY  WRITE -1 fe:00:16556061 0 EOF
            3: FLOCK  ADVISORY  WRITE 21742 00:2a:16220287 0 EOF
            3: -> FLOCK  ADVISORY  WRITE 21750 00:2a:16220287 0 EOF

            """, source: "/proc/locks")
        XCTAssertEqual(all.map(\.kind), ["LEASE", "OFDLCK", "FLOCK", "FLOCK"])
        XCTAssertEqual(all[1].pid, -1)
        XCTAssertEqual(all[2].devMajor, 0)
        XCTAssertEqual(all[2].devMinor, 0x2a)
        XCTAssertEqual(all.map(\.blocked), [false, false, false, true])
        XCTAssertEqual(all[3].text, "3: -> FLOCK ADVISORY WRITE 21750 00:2a:16220287 0 EOF")

        for bad in ["lock:\tFLOCK ADVISORY WRITE 1 00:00:1 0 EOF", "lock:\t1: FLOCK ADVISORY WRITE x 00:00:1 0 EOF",
                    "lock:\t1: FLOCK ADVISORY WRITE 1 00:1 0 EOF", "lock:\t1: POSIX ADVISORY WRITE 1 00:00:1 0 END"] {
            XCTAssertThrowsError(try ProcFdInfoParser.parse(bad, source: "fdinfo"), bad)
        }
    }

    /// The kernel's own: every lock this process takes shows in its fdinfo through ProcReader.
    func testOwnLocksAreRead() throws {
        let path = NSTemporaryDirectory() + "/filelocktests-\(getpid())"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd); unlink(path) }
        XCTAssertEqual(flock(fd, LOCK_EX), 0)
        let info = try ProcReader().fdinfo(pid: getpid(), fd: fd)
        var st = stat()
        fstat(fd, &st)
        XCTAssertEqual(info.locks.map(\.kind), ["FLOCK"])
        XCTAssertEqual(info.locks.first?.inode, UInt64(st.st_ino))
        XCTAssertEqual(info.locks.first?.pid, getpid())
        XCTAssertTrue(try ProcReader().locks().contains { $0.inode == UInt64(st.st_ino) && $0.kind == "FLOCK" && $0.type == "WRITE" })
    }

    func openFd(_ lines: [String], pid: Int32 = 100, fd: Int32 = 3) throws -> OpenFd {
        let info = try ProcFdInfoParser.parse((["pos:\t0", "flags:\t02", "mnt_id:\t1", "ino:\t7"] + lines.map { "lock:\t" + $0 }).joined(separator: "\n"), source: "t")
        return OpenFd(pid: pid, fd: fd, target: "/f", info: info, stat: stat())
    }

    func testDumperRecordsCRIUEntries() throws {
        let d = FileLockDumper()
        let f = try openFd(["1: FLOCK  ADVISORY  READ 100 00:01:7 0 EOF", "2: POSIX  ADVISORY  WRITE 100 00:01:7 5 14",
                            "3: OFDLCK ADVISORY  WRITE -1 00:01:7 100 EOF", "4: LEASE  ACTIVE    WRITE 100 00:01:7 0 EOF"])
        // Off: the first lock refuses, naming the option.
        XCTAssertThrowsError(try d.note(f, id: 1, treePids: [100]) { _ in false }) { e in
            XCTAssertTrue("\(e)".contains("--file-locks"), "\(e)")
            XCTAssertTrue("\(e)".contains("pid 100: fd 3 (/f)"), "\(e)")
        }
        d.enabled = true
        try d.note(f, id: 1, treePids: [100]) { _ in false }
        // The same description through a dup, and through a child's inherited fd: nothing new.
        try d.note(try openFd(["1: FLOCK  ADVISORY  READ 100 00:01:7 0 EOF", "2: LEASE  ACTIVE    WRITE 100 00:01:7 0 EOF"], fd: 4), id: 1, treePids: [100]) { _ in false }
        try d.note(try openFd(["1: FLOCK  ADVISORY  READ 100 00:01:7 0 EOF", "2: LEASE  ACTIVE    WRITE 100 00:01:7 0 EOF"], pid: 101), id: 1, treePids: [100, 101]) { _ in false }
        let got = d.entries.map { [$0.flag, $0.type, UInt32($0.pid), UInt32($0.fd), UInt32($0.start), UInt32($0.len)] }
        XCTAssertEqual(got, [[2, 0, 100, 3, 0, 0], [1, 1, 100, 3, 5, 10], [4, 1, 100, 3, 100, 0], [8, 1, 100, 3, 0, 0]])
    }

    func testDumperRefusesWhatCannotComeBack() throws {
        let d = FileLockDumper()
        d.enabled = true
        for (line, why) in [("1: LEASE  BREAKING  READ 100 00:01:7 0 EOF", "a lease being broken"),
                            ("1: DELEG  ACTIVE    READ 100 00:01:7 0 EOF", "a DELEG lock"),
                            ("1: FLOCK  MANDATORY  WRITE 100 00:01:7 0 EOF", "a MANDATORY flock"),
                            ("1: POSIX  ADVISORY  WRITE 555 00:01:7 0 EOF", "taken by pid 555"),
                            ("1: LEASE  ACTIVE    READ 555 00:01:7 0 EOF", "taken by pid 555")] {
            XCTAssertThrowsError(try d.note(try openFd([line]), id: 9, treePids: [100, 555]) { _ in false }, line) { e in
                XCTAssertTrue("\(e)".contains(why), "\(line): \(e)")
            }
        }
        // A POSIX lock of another task sharing the fd table is that task's to take again.
        try d.note(try openFd(["1: POSIX  ADVISORY  READ 555 00:01:7 0 EOF"]), id: 9, treePids: [100, 555]) { $0 == 555 }
        XCTAssertEqual(d.entries.map(\.pid), [555])
        XCTAssertTrue(d.ownerIsLease(try openFd(["1: LEASE  ACTIVE    READ 100 00:01:7 0 EOF"]), ownerType: 1, pid: 100))
        XCTAssertFalse(d.ownerIsLease(try openFd(["1: LEASE  ACTIVE    READ 100 00:01:7 0 EOF"]), ownerType: 1, pid: 101))
    }
}
