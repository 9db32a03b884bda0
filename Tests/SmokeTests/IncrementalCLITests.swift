import CKernel
import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// The incremental commands through the real cryo binary: a chain ends in a working restore,
/// dedup keeps it working, and every failure says why and leaves the process as it was.
final class IncrementalCLITests: XCTestCase {
    var dir = ""
    var bin: String { Locations.selfDir() }
    var store: Int32 = -1

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("dump and restore need root") }
        dir = try Locations.makeRunDir()
        _ = ck_prctl(36, 1, 0, 0, 0)  // subreaper: daemonized workloads are ours to reap
        store = try TrackStore.makeSocket()
    }

    override func tearDown() {
        if store >= 0 { close(store) }
        try? FileManager.default.removeItem(atPath: dir)
    }

    func start(_ name: String, _ args: [String] = []) throws -> Int32 { try CRHarness(dir: dir).start(name, args: args) }

    /// cryo with the track store as its fd 3.
    func cryo(_ args: [String]) throws -> (Int32, String) { try CRHarness(dir: dir).cryo(args, passFd: store) }

    func finish(_ name: String, _ pid: Int32) throws -> String {
        kill(pid, SIGTERM)
        _ = try Subprocess.wait(pid, timeout: 60)
        return (try? String(contentsOfFile: dir + "/\(name)/out", encoding: .utf8)) ?? "no result"
    }

    func waitGone(_ pid: Int32) {
        while kill(pid, 0) == 0 { var st: Int32 = 0; _ = waitpid(pid, &st, WNOHANG); usleep(2000) }
    }

    func pagesSize(_ d: String, _ pid: Int32) -> Int {
        var st = stat(); return stat(d + "/pages-\(pid).img", &st) == 0 ? Int(st.st_size) : -1
    }

    func testPreDumpsDumpDedupRestore() throws {
        // 1 page/ms: half of the 16 MiB is rewritten only after 2 s between the last pre-dump
        // and the dump, which a loaded CI machine can take at 8 pages/ms (0.25 s).
        let pid = try start("dirty00", ["16", "1"])
        var (code, out) = try cryo(["pre-dump", "-t", "\(pid)", "-D", dir + "/pre1", "--track-store", "3"])
        XCTAssertEqual(code, 0, out)
        usleep(100_000)
        (code, out) = try cryo(["pre-dump", "-t", "\(pid)", "-D", dir + "/pre2", "--prev-images-dir", "../pre1", "--track-store", "3"])
        XCTAssertEqual(code, 0, out)
        (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", dir + "/final", "--track-mem", "--prev-images-dir", "../pre2", "--track-store", "3"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/final/parent"), "../pre2")
        // Incremental: the later snapshots hold far less than the first (16 MiB of data).
        XCTAssertGreaterThan(pagesSize(dir + "/pre1", pid), 16 << 20)
        XCTAssertLessThan(pagesSize(dir + "/final", pid), pagesSize(dir + "/pre1", pid) / 2)
        waitGone(pid)
        (code, out) = try cryo(["dedup", "-D", dir + "/final"])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("bytes freed"), out)
        (code, out) = try cryo(["restore", "-D", dir + "/final", "-d"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try finish("dirty00", pid), "PASS\n")
    }

    func testFailuresLeaveTheProcessRunningAndNameTheCause() throws {
        let pid = try start("memhog00", ["8"])
        // A previous snapshot that does not exist.
        var (code, out) = try cryo(["pre-dump", "-t", "\(pid)", "-D", dir + "/p", "--prev-images-dir", "../nothing", "--track-store", "3"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("nothing"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/p/inventory.img"))
        // A track store that is not a datagram socket.
        (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", dir + "/d", "-R", "--track-mem", "--track-store", "0"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains("track store fd 0"), out)
        XCTAssertEqual(kill(pid, 0), 0, "a failed dump leaves the process running")
        // No userfaultfd was left behind in the process.
        let proc = ProcReader()
        for fd in try proc.fds(pid: pid) { XCTAssertFalse((try? proc.fdTarget(pid: pid, fd: fd))?.contains("userfaultfd") ?? false) }

        // A chain with a missing link: restore names it and creates nothing.
        (code, out) = try cryo(["pre-dump", "-t", "\(pid)", "-D", dir + "/a", "--track-store", "3"])
        XCTAssertEqual(code, 0, out)
        (code, out) = try cryo(["dump", "-t", "\(pid)", "-D", dir + "/b", "--track-mem", "--prev-images-dir", "../a", "--track-store", "3"])
        XCTAssertEqual(code, 0, out)
        waitGone(pid)
        let link = dir + "/a/pages-\(pid).img"
        try FileManager.default.moveItem(atPath: link, toPath: dir + "/saved.img")
        (code, out) = try cryo(["restore", "-D", dir + "/b", "-d"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(out.contains(link), out)
        XCTAssertNotEqual(kill(pid, 0), 0, "no process was created")
        try FileManager.default.moveItem(atPath: dir + "/saved.img", toPath: link)
        (code, out) = try cryo(["restore", "-D", dir + "/b", "-d"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try finish("memhog00", pid), "PASS\n")
    }
}
