import Foundation
import Glibc
import XCTest
import CKernel

/// State cryo cannot restore yet is refused at dump, naming the fd, and the process runs on.
extension RestoreErrorsTests {
    /// A pty whose output is stopped (TCOOFF) is refused at the end of the dump, naming it;
    /// the bytes the dump had read from its master by then are queued again.
    func testPtyStoppedOutputIsRefusedAndItsQueueKept() throws {
        let work = dir + "/pty-stopped"
        let p = try python("""
            import os, termios, time, fcntl
            os.closerange(3, 65536)
            m, s = os.openpty()
            t = termios.tcgetattr(s); t[3] &= ~termios.ECHO; termios.tcsetattr(s, termios.TCSANOW, t)
            os.write(s, b'abc\\n')
            termios.tcflow(s, termios.TCOOFF)
            open("ready", "w").write(os.ttyname(s))
            while not os.path.exists("go"): time.sleep(0.05)
            fcntl.fcntl(m, fcntl.F_SETFL, os.O_NONBLOCK)
            open("got", "wb").write(os.read(m, 100))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let slave = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["the output of \(slave) is stopped"])
        FileManager.default.createFile(atPath: work + "/go", contents: nil)
        var got: Data?
        for _ in 0..<100 where got == nil { usleep(50_000); got = FileManager.default.contents(atPath: work + "/got") }
        XCTAssertEqual(got.map { String(decoding: $0, as: UTF8.self) }, "abc\r\n", "the master's queue after the failed dump")
    }

    /// A process reparented to a subreaper out of its session's line (its session's leader,
    /// its old parent, is gone) could not take that session again at restore: refused at dump,
    /// naming it, instead of a restore that fails after the tree is gone (CRIU's
    /// child_subreaper_and_reparent and zombie_leader).
    func testProcessInAThirdSessionIsRefused() throws {
        let work = dir + "/session"
        let p = try python("""
            import ctypes, os, time
            ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
            root = os.getpid()
            a = os.fork()
            if a == 0:
                os.setsid()
                if os.fork() == 0:
                    os.setpgid(0, 0)
                    # Its parent, then (once that exits) root, the subreaper; gone when root is.
                    first = os.getppid()
                    while os.getppid() in (first, root): time.sleep(0.1)
                    os._exit(0)
                os._exit(0)
            os.waitpid(a, 0)
            time.sleep(0.3)
            open("ready", "w").write(str(a))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let a = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        try assertDumpFails(p, work: work, saying: ["in session \(a), which is neither its own nor its parent's"])
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

    /// An owner the tree restores (itself) is kept (fown00); one outside it is refused.
    func testFileOwnerOutsideTheTreeIsRefused() throws {
        let work = dir + "/fown"
        let p = try python("""
            import fcntl, os, time
            r, w = os.pipe()
            fcntl.fcntl(r, fcntl.F_SETOWN, os.getppid())
            open("ready", "w").write(str(r))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (pipe:[", "F_SETOWN owner process \(getpid())", "outside the dumped tree"])
    }

    /// Without --file-locks, flock, POSIX and OFD locks: each is refused by itself, naming the fd, the lock and the option.
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
            try assertDumpFails(p, work: work, saying: ["fd \(fd) (\(work)/locked)", "holds a file lock", name, "--file-locks"])
        }
    }

    /// With --file-locks, a lease being broken (a writer's open is waiting for it) is still
    /// refused, named: the break cannot be started again from images.
    func testLocksThatCannotComeBackAreRefused() throws {
        let work = dir + "/lease-breaking"
        let p = try python("""
            import fcntl, os, signal, time
            signal.signal(signal.SIGIO, signal.SIG_IGN)
            os.close(os.open("leased", os.O_RDWR | os.O_CREAT, 0o644))
            f = os.open("leased", os.O_RDONLY)
            fcntl.fcntl(f, fcntl.F_SETLEASE, fcntl.F_RDLCK)
            if os.fork() == 0:
                try: os.open("leased", os.O_WRONLY | os.O_NONBLOCK)
                except BlockingIOError: pass
                os._exit(0)
            os.wait()
            open("ready", "w").write(str(f))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (\(work)/leased)", "LEASE BREAKING", "a lease being broken"], options: ["--file-locks"])
    }

    /// A pidfd of a process outside the tree (here pid 1) would name another process after
    /// restore: refused, naming the fd and the pid.
    func testPidfdOutsideTheTreeIsRefused() throws {
        let work = dir + "/pidfd-outside"
        let p = try python("""
            import os, time
            f = os.pidfd_open(1)
            open("r", "w").write(str(f)); os.rename("r", "ready")
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)  // from writing "ready" into its sleep
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (anon_inode:[pidfd])", "a pidfd of pid 1, which is outside of the dumped tree"])
    }

    /// A task in a cgroup namespace of its own would come back in cryo's (uts, pid, ipc, mnt
    /// and net ones are restored: docs/NAMESPACES.md).
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

    /// No socket option lists a socket's multicast memberships; each group joined in its
    /// namespace is asked of the socket. Joined on lo only, dropped when the socket closes.
    func testMulticastMembershipIsRefused() throws {
        for (name, join, says) in [
            ("v4", "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack('4s4si', socket.inet_aton('239.255.42.99'), socket.inet_aton('0.0.0.0'), 1))",
             "joined multicast group 239.255.42.99 on interface 1"),
            ("v6", "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, socket.inet_pton(socket.AF_INET6, 'ff15::4299') + struct.pack('i', 1))",
             "joined multicast group ff15::4299 on interface 1"),
        ] {
            let work = dir + "/mcast-" + name
            let p = try python("""
                import socket, struct, time
                \(join)
                open("ready", "w").write(str(s.fileno()))
                time.sleep(30)
                """, in: work)
            defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
            let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
            usleep(200_000)
            try assertDumpFails(p, work: work, saying: ["fd \(fd) (socket:[", says])
        }
    }

    func testIpOptionsAreRefused() throws {
        let work = dir + "/ipopts"
        let p = try python("""
            import socket, time
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([7, 7, 4, 0, 0, 0, 0, 0]))  # record route
            open("ready", "w").write(str(s.fileno()))
            time.sleep(30)
            """, in: work)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let fd = try String(contentsOfFile: work + "/ready", encoding: .utf8)
        usleep(200_000)
        try assertDumpFails(p, work: work, saying: ["fd \(fd) (socket:[", "IP_OPTIONS is set (8 bytes)"])
    }
}
