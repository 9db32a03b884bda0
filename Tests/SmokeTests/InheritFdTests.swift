import Foundation
import Glibc
import XCTest
import ZDTMCore

/// A process whose stdout is a pipe to a process outside the tree (`app | tee log`, a
/// supervisor's log pipe): the dump takes it, the restore needs the caller's fd for that pipe
/// (`--inherit-fd fd[N]:pipe:[INODE]`, as CRIU), refuses without one and leaves nothing, and
/// with one the restored process writes on into the new pipe.
final class InheritFdTests: XCTestCase {
    func pipe2() throws -> (read: Int32, write: Int32) {
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        _ = fcntl(p[0], F_SETFL, O_NONBLOCK)
        return (p[0], p[1])
    }

    /// Reads numbered lines from `fd` until one above `after` (or `timeout`); the last number.
    func counter(_ fd: Int32, above after: Int, timeout: Double = 10) -> Int? {
        var text = ""
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let n = read(fd, &buf, buf.count)
            if n > 0 { text += String(decoding: buf[0..<n], as: UTF8.self) } else { usleep(20_000) }
            if let last = text.split(whereSeparator: \.isNewline).compactMap({ Int($0) }).last, last > after { return last }
        }
        return nil
    }

    func testPipeToAProcessOutsideTheTree() throws {
        let h = try CRHarness.make("InheritFdTests")
        defer { h.remove() }
        guard access("/usr/bin/python3", X_OK) == 0 else {
            print("InheritFdTests: skipped, needs python3")
            throw XCTSkip("no python3")
        }
        let a = try pipe2()
        defer { close(a.read) }
        var st = stat()
        XCTAssertEqual(fstat(a.read, &st), 0)
        let key = "pipe:[\(st.st_ino)]"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-u", "-c", "import os, time\nos.closerange(3, 65536)\ni = 0\nwhile True:\n    i += 1\n    print(i)\n    time.sleep(0.02)"]
        p.standardOutput = FileHandle(fileDescriptor: a.write, closeOnDealloc: false)
        p.standardInput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        // The writer closes what it inherited from the test process beyond stdio.
        try p.run()
        close(a.write)
        let pid = p.processIdentifier
        defer { kill(pid, SIGKILL) }
        let before = try XCTUnwrap(counter(a.read, above: 5), "the writer never wrote")

        let images = h.dir + "/img"
        let (dumped, dlog) = try h.cryo(["dump", "-t", String(pid), "-D", images, "-v4", "-o", "dump.log"])
        XCTAssertEqual(dumped, 0, "dump of a process writing to a pipe read outside the tree: \(dlog)")
        h.waitGone([pid])

        // Without the fd: refused, naming what to give, and nothing left under its pid.
        let (refused, rlog) = try h.cryo(["restore", "-D", images, "-d", "-v4", "-o", "restore-refused.log"])
        XCTAssertNotEqual(refused, 0)
        XCTAssertTrue(rlog.contains("--inherit-fd fd[N]:\(key)"), rlog)
        XCTAssertNotEqual(kill(pid, 0), 0, "a process is left under pid \(pid) after the refused restore")

        // With a new pipe for it (cryo's fd 3): the counter goes on into it.
        let b = try pipe2()
        defer { close(b.read) }
        let pidfile = h.dir + "/restored.pid"
        let (restored, log) = try h.cryo(["restore", "-D", images, "-d", "--pidfile", pidfile, "--inherit-fd", "fd[3]:\(key)", "-v4", "-o", "restore.log"], passFd: b.write)
        close(b.write)
        XCTAssertEqual(restored, 0, log)
        let rpid = try XCTUnwrap(Int32((try String(contentsOfFile: pidfile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(rpid, pid)
        let after = counter(b.read, above: before)
        XCTAssertNotNil(after, "the restored process wrote nothing above \(before) into the inherited pipe")
        kill(rpid, SIGKILL)
        h.waitGone([rpid])
    }
}
