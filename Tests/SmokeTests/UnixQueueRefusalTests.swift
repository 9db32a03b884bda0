import Foundation
import Glibc
import XCTest

/// Unix socket queues cryo could not give back exactly are refused at dump, naming the fd and
/// why, and the process runs on (docs/EXT-UNIX.md).
extension RestoreErrorsTests {
    /// A datagram from a named sender: restore sends from unnamed sockets, so the reader's
    /// recvfrom would lose the sender's name.
    func testDatagramFromANamedSenderIsRefused() throws {
        let work = dir + "/named-sender"
        try assertPythonDumpFails("""
            import os, socket, time
            a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); a.bind("\\0cryo-named-sender-a-%d" % os.getpid())
            b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); b.bind("\\0cryo-named-sender-b-%d" % os.getpid())
            a.sendto(b"hi", b.getsockname())
            open("ready", "w").write(str(b.fileno()))
            time.sleep(30)
            """, work: work) { fd, pid in ["fd \(fd) ", "a datagram from @cryo-named-sender-a-\(pid)", "unnamed socket"] }
    }

    /// A zero-length packet whose sender is gone: a peek marks it, so a dump that leaves the
    /// tree running is refused (no later dump could see it); a dump that kills the tree keeps it.
    func testZeroLengthPacketWithNoPeerIsRefusedWhenLeftRunning() throws {
        let work = dir + "/zero-length"
        try assertPythonDumpFails("""
            import os, socket, time
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            b.send(b"x"); b.send(b""); b.close()
            open("ready", "w").write(str(a.fileno()))
            time.sleep(30)
            """, work: work, options: ["--leave-running"]) { fd, _ in ["fd \(fd) ", "zero-length packet", "no later dump"] }
    }

    /// Runs a Python program that writes the fd in question to "ready" and sleeps; its dump
    /// must be refused, saying `words(fd, pid)`, and leave it running.
    func assertPythonDumpFails(_ code: String, work: String, options: [String] = [], saying words: (String, Int32) -> [String]) throws {
        let p = try python(code, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: words(fd, p.processIdentifier), options: options)
    }
}
