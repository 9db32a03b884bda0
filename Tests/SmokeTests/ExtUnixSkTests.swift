import Foundation
import Glibc
import XCTest

/// CRIU's --ext-unix-sk=INO with a real outside peer, the test itself: a Python echo process
/// whose stdin and stdout are one end of a stream socketpair the test holds the other end of.
/// Refused without the option (the process runs on); dumped with it; restored only with the
/// caller's stand-in (--inherit-fd fd[N]:socket:[INO]). The line queued to the process at the
/// dump (sent while it slept) reaches it after restore, and it answers through the stand-in.
final class ExtUnixSkTests: XCTestCase {
    func pair() throws -> (Int32, Int32) {
        var sv: [Int32] = [-1, -1]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv), 0)
        return (sv[0], sv[1])
    }

    func say(_ fd: Int32, _ s: String) { _ = s.withCString { write(fd, $0, strlen($0)) } }

    /// One line read from `fd` within `timeout`.
    func line(_ fd: Int32, timeout: Int32 = 10) -> String? {
        var out: [UInt8] = []
        var c: UInt8 = 0
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        while poll(&p, 1, timeout * 1000) == 1, read(fd, &c, 1) == 1 {
            if c == UInt8(ascii: "\n") { return String(decoding: out, as: UTF8.self) }
            out.append(c)
        }
        return nil
    }

    func testStreamSocketToTheTestOutsideTheTree() throws {
        let h = try CRHarness.make("ExtUnixSkTests")
        defer { h.remove() }
        guard access("/usr/bin/python3", X_OK) == 0 else {
            print("ExtUnixSkTests: skipped, needs python3")
            throw XCTSkip("no python3")
        }
        let (mine, theirs) = try pair()
        defer { close(mine) }
        var st = stat()
        XCTAssertEqual(fstat(theirs, &st), 0)
        let ino = UInt32(truncatingIfNeeded: st.st_ino)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-u", "-c", """
        import os, time
        os.closerange(3, 65536)
        buf = b""
        while True:
            d = os.read(0, 4096)
            if not d:
                break
            buf += d
            while b"\\n" in buf:
                l, buf = buf.split(b"\\n", 1)
                if l == b"sleep":
                    os.write(1, b"ok\\n")
                    time.sleep(2)
                else:
                    os.write(1, b"echo:" + l + b"\\n")
        """]
        p.standardInput = FileHandle(fileDescriptor: theirs, closeOnDealloc: false)
        p.standardOutput = FileHandle(fileDescriptor: theirs, closeOnDealloc: false)
        p.standardError = FileHandle.nullDevice
        try p.run()
        close(theirs)
        let pid = p.processIdentifier
        defer { kill(pid, SIGKILL) }
        say(mine, "one\n")
        XCTAssertEqual(line(mine), "echo:one")

        let images = h.dir + "/img"
        // Without the option: refused, naming the fd and the option, and the process runs on.
        let (refused, rlog) = try h.cryo(["dump", "-t", String(pid), "-D", images + "-refused", "-v4", "-o", "dump-refused.log"])
        XCTAssertNotEqual(refused, 0)
        XCTAssertTrue(rlog.contains("fd 0") && rlog.contains("--ext-unix-sk=\(ino)"), rlog)
        say(mine, "two\n")
        XCTAssertEqual(line(mine), "echo:two", "the process does not answer after the refused dump")

        // Queued to the tree's socket at the dump: sent while the process sleeps.
        say(mine, "sleep\n")
        XCTAssertEqual(line(mine), "ok")
        say(mine, "pending\n")
        let (dumped, dlog) = try h.cryo(["dump", "-t", String(pid), "-D", images, "--ext-unix-sk=\(ino)", "-v4", "-o", "dump.log"])
        XCTAssertEqual(dumped, 0, dlog)
        h.waitGone([pid])

        // Without a stand-in: refused, naming what to give, and nothing left under its pid.
        let key = "socket:[\(ino)]"
        let (norestore, nlog) = try h.cryo(["restore", "-D", images, "-d", "-v4", "-o", "restore-refused.log"])
        XCTAssertNotEqual(norestore, 0)
        XCTAssertTrue(nlog.contains("--inherit-fd fd[N]:\(key)"), nlog)
        XCTAssertNotEqual(kill(pid, 0), 0, "a process is left under pid \(pid) after the refused restore")

        let (mine2, stand) = try pair()
        defer { close(mine2) }
        let pidfile = h.dir + "/restored.pid"
        let (restored, log) = try h.cryo(["restore", "-D", images, "-d", "--pidfile", pidfile, "--inherit-fd", "fd[3]:\(key)", "-v4", "-o", "restore.log"], passFd: stand)
        close(stand)
        XCTAssertEqual(restored, 0, log)
        let rpid = try XCTUnwrap(Int32((try? String(contentsOfFile: pidfile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""))
        defer { kill(rpid, SIGKILL); h.waitGone([rpid]) }
        XCTAssertEqual(line(mine2), "echo:pending", "the line queued to the tree's socket at the dump")
        say(mine2, "after\n")
        XCTAssertEqual(line(mine2), "echo:after")
    }
}
