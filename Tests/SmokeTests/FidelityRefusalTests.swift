import Foundation
import Glibc
import XCTest
import CKernel

/// State cryo cannot restore yet is refused at dump, naming the fd, and the process runs on.
extension RestoreErrorsTests {
    func testPtyMasterIsRefused() throws {
        // A tmux-like server: it holds a pty master, its pane's terminal.
        let work = dir + "/pty"
        let p = try python("""
            import os, time
            m, s = os.openpty(); os.close(s)
            open("ready", "w").write(str(m))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (/dev/ptmx)", "pty master"])
    }

    func testPtySlaveIsRefusedWithoutShellJob() throws {
        let work = dir + "/pts"
        var name = [CChar](repeating: 0, count: 128)
        let m = ck_open_pty(&name, name.count)
        guard m >= 0 else { print("testPtySlaveIsRefusedWithoutShellJob: skipped, no pty"); throw XCTSkip("no pty") }
        defer { close(m) }
        let slave = String(cString: name)
        let p = try python("""
            import os, time
            s = os.open("\(slave)", os.O_RDWR | os.O_NOCTTY)
            open("ready", "w").write(str(s))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (\(slave))", "--shell-job"])
    }

    func testFileOwnerIsRefused() throws {
        let work = dir + "/fown"
        let p = try python("""
            import fcntl, os, time
            r, w = os.pipe()
            fcntl.fcntl(r, fcntl.F_SETOWN, os.getpid())
            open("ready", "w").write(str(r))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (pipe:[", "F_SETOWN owner process \(p.processIdentifier)"])
    }

    /// flock, POSIX and OFD locks: each is refused by itself, naming the fd and the lock.
    func testFileLocksAreRefused() throws {
        for (name, take) in [("FLOCK", "fcntl.flock(f, fcntl.LOCK_EX)"),
                             ("POSIX", "fcntl.lockf(f, fcntl.LOCK_EX, 10, 0)"),
                             ("OFDLCK", "fcntl.fcntl(f, 37, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0))")] {  // F_OFD_SETLK
            let work = dir + "/lock-" + name
            let p = try python("""
                import fcntl, os, struct, time
                f = os.open("locked", os.O_RDWR | os.O_CREAT, 0o644)
                \(take)
                open("ready", "w").write(str(f))
                time.sleep(30)
                """, in: work)
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
            let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
            usleep(200_000)  // from writing "ready" into its sleep
            try assertDumpFails(p, work: work, saying: ["fd \(fd) (\(work)/locked)", "holds a file lock", name])
        }
    }

    /// A task in a cgroup namespace of its own would come back in cryo's (uts, pid, ipc, mnt
    /// and net ones are restored: docs/NAMESPACES.md).
    func testOwnCgroupNamespaceIsRefused() throws {
        let work = dir + "/cgroupns"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        p.arguments = ["-C", "sleep", "30"]
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        usleep(300_000)  // unshare has exec'd sleep
        try assertDumpFails(p, work: work, saying: ["pid \(p.processIdentifier): cgroup namespace cgroup:[", "cannot dump and restore this kind of namespace yet"])
    }

    func testUnkeptSocketOptionIsRefused() throws {
        let work = dir + "/sockopt"
        let p = try python("""
            import socket, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, 29, 1)  # SO_TIMESTAMP
            open("ready", "w").write(str(s.fileno()))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (socket:[", "SO_TIMESTAMP is 1"])
    }
}
