import Foundation
import Glibc
import XCTest

/// A datagram socket whose connected peer was bound to a path and closed: restore would have to
/// bind that path again to give it such a peer, so the dump refuses it, naming the fd and the
/// path, and the process runs on (docs/EXT-UNIX.md). An unnamed or abstract closed peer is
/// restored (workload unix07).
extension RestoreErrorsTests {
    func testDatagramWhosePathPeerClosedIsRefused() throws {
        let work = dir + "/dead-path-peer"
        try assertPythonDumpFails("""
            import os, socket, time
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("srv.sock")
            c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.connect("srv.sock")
            s.close(); os.unlink("srv.sock")
            open("ready", "w").write(str(c.fileno()))
            time.sleep(30)
            """, work: work) { fd, _ in ["fd \(fd) ", "srv.sock", "was closed"] }
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
