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
        let p = try python("""
            import os, socket, time
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("srv.sock")
            c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.connect("srv.sock")
            s.close(); os.unlink("srv.sock")
            open("ready", "w").write(str(c.fileno()))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) ", "srv.sock", "was closed"])
    }
}
