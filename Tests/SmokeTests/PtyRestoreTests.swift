import Foundation
import Glibc
import XCTest
import CKernel
import ZDTMCore

/// A pty's index is part of what comes back: while another process holds /dev/pts/N the
/// restore fails naming it and leaves nothing behind; once it is free the same images restore
/// and the workload finds every setting as it was.
final class PtyRestoreTests: XCTestCase {
    func testTakenIndexFailsTheRestoreThenTheSameImagesRestore() throws {
        let h = try CRHarness.make("PtyRestoreTests")
        defer { h.remove() }
        let pid = try h.start("pty00")
        let index = try XCTUnwrap(Int((try String(contentsOfFile: "/proc/\(pid)/fdinfo/3", encoding: .utf8))
            .split(separator: "\n").first { $0.hasPrefix("tty-index:") }?.split(separator: "\t").last.map(String.init) ?? ""),
            "fd 3 of pty00 is not its pty master")
        let images = h.dir + "/img"
        let (dc, dout) = try h.cryo(["dump", "-t", "\(pid)", "-D", images])
        guard dc == 0 else { kill(pid, SIGKILL); return XCTFail("dump exited \(dc): \(dout.suffix(600))") }
        h.waitGone([pid])
        var st: Int32 = 0
        for _ in 0..<50 { while waitpid(-1, &st, WNOHANG) > 0 {}; usleep(10_000) }

        // Take the index: ptmx hands out the lowest free one.
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        while true {
            let fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
            guard fd >= 0 else { return XCTFail("open /dev/ptmx: \(String(cString: strerror(errno)))") }
            held.append(fd)
            var n: UInt32 = 0
            XCTAssertEqual(ck_ioctl(fd, 0x8004_5430 /* TIOCGPTN */, &n), 0)
            if Int(n) >= index { XCTAssertEqual(Int(n), index, "index \(index) was taken before the test could take it"); break }
        }
        let (rc, rout) = try h.cryo(["restore", "-D", images, "-d"])
        XCTAssertNotEqual(rc, 0)
        XCTAssertTrue(rout.contains("/dev/pts/\(index) is taken"), rout)
        XCTAssertNotEqual(kill(pid, 0), 0, "a failed restore left pid \(pid) behind")

        for fd in held { close(fd) }
        held = []
        let (rc2, rout2) = try h.cryo(["restore", "-D", images, "-d"])
        guard rc2 == 0 else { return XCTFail("restore exited \(rc2): \(rout2.suffix(600))") }
        XCTAssertEqual(try h.stop(pid, name: "pty00"), "PASS")
    }
}
