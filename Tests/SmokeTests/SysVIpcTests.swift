import Foundation
import Glibc
import XCTest
import Engine

/// SysV shm in the host's IPC namespace (docs/SYSV-IPC.md): a segment the tree attached is
/// attached again when it is still there, and a restore whose segment is gone (another one
/// made in between) fails naming it, leaving no process and no SysV object behind.
extension RestoreErrorsTests {
    /// The host's shm segments, as ids.
    func hostSegments() throws -> Set<Int32> {
        let lines = try String(contentsOfFile: "/proc/sysvipc/shm", encoding: .utf8).split(separator: "\n").dropFirst()
        return Set(lines.compactMap { l in l.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int32($0) } })
    }

    func attachedSegment(of pid: Int32) throws -> Int32 {
        let m = try XCTUnwrap(try ProcReader().maps(pid: pid).first { $0.path.hasPrefix("/SYSV") }, "sysvhost00 attaches a segment")
        return Int32(m.inode)
    }

    func testHostSysVShmIsReattachedOrRefusedWhenGone() throws {
        // 1. The segment is still there: the restored process finds its bytes and the same segment.
        var pid = try start("sysvhost00")
        var id = try attachedSegment(of: pid)
        var made = [id]  // removed at the end whatever happens: the host's namespace is left as it was
        defer { for i in made { shmctl(i, IPC_RMID, nil) } }
        let images = dir + "/img"
        var (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", images])
        XCTAssertEqual(code, 0, out)
        CRHarness(dir: dir).waitGone([pid])
        XCTAssertTrue(try hostSegments().contains(id), "the host's segment outlives the dumped tree")
        (code, out) = try cryo(["restore", "-D", images, "-d"])
        XCTAssertEqual(code, 0, out)
        try stop(pid)
        XCTAssertEqual(try String(contentsOfFile: dir + "/sysvhost00/out", encoding: .utf8), "PASS\n")
        XCTAssertFalse(try hostSegments().contains(id), "the workload removes its segment at the end")

        // 2. The segment is removed after the dump and another one made: refused, by id.
        pid = try start("sysvhost00")
        id = try attachedSegment(of: pid)
        made.append(id)
        let second = dir + "/img2"
        (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", second])
        XCTAssertEqual(code, 0, out)
        CRHarness(dir: dir).waitGone([pid])
        XCTAssertEqual(shmctl(id, IPC_RMID, nil), 0)
        let other = shmget(IPC_PRIVATE, 4096, 0o600)
        XCTAssertGreaterThanOrEqual(other, 0)
        defer { shmctl(other, IPC_RMID, nil) }
        let before = try hostSegments()
        (code, out) = try cryo(["restore", "-D", second, "-d"])
        XCTAssertNotEqual(code, 0, out)
        XCTAssertTrue(out.contains("SysV shm id \(id) attached by pid \(pid)") && out.contains("no longer exists"), out)
        XCTAssertNotEqual(kill(pid, 0), 0, "a failed restore leaves no process")
        XCTAssertEqual(try hostSegments(), before, "a failed restore makes no SysV segment")
    }

    /// A host segment removed (IPC_RMID) while the tree attaches it dies with the tree: the
    /// dump refuses it by id, and the process runs on.
    func testRemovedHostSegmentIsRefusedAtDump() throws {
        let work = dir + "/shm-rmid"
        let p = try python("""
            import ctypes, os, time
            os.closerange(3, 65536)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.shmat.restype = ctypes.c_void_p
            i = libc.shmget(0, 8192, 0o600)
            a = libc.shmat(i, None, 0)
            ctypes.memset(a, 7, 8192)
            libc.shmctl(i, 0, None)  # IPC_RMID: gone once detached
            open("ready", "w").write(str(i))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let id = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["SysV shm id \(id) attached at 0x", "removed (IPC_RMID)"])
    }
}
