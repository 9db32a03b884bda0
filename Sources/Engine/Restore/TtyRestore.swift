import CKernel
import Glibc

extension Restorer {
    /// Once every task has its fds and groups: each pty becomes its session's controlling
    /// terminal again (TIOCSCTTY, injected into the session leader: only it may take one),
    /// with its foreground group (set by the leader too);
    /// then its data in flight is queued again, and a locked pty is locked again, after the
    /// tree's slaves were opened (exclusive mode: `exclusivePtys`, after every file).
    func restoreTerminals(_ plans: [Plan], built: Built, transport: FdTransport, shared: RestoredObjects) throws {
        for (_, p) in shared.ptys.made.sorted(by: { $0.key < $1.key }) {
            let info = p.info
            func fail(_ r: String) -> RestoreError { .file(pid: 0, id: 0, what: "pty \(p.slavePath)", reason: r) }
            if info.sid != 0 {
                let sid = Int32(bitPattern: info.sid)
                guard let plan = plans.first(where: { $0.pid == sid }), !plan.isZombie, let leader = built.targets[sid]?.first else {
                    throw fail("it is the controlling terminal of session \(sid), whose leader is not a live process of the tree")
                }
                let fd = try transport.send(p.keeper, to: leader, what: p.slavePath)
                do {
                    try leader.remote.syscall(.ioctl, UInt64(fd), UInt64(TtyIoctl.setCtty), 0)
                } catch {
                    throw fail("TIOCSCTTY in session leader \(sid): \(error)")
                }
                // Only a process of the session may set its foreground group; pids as it sees them.
                if info.pgrp != 0 {
                    var b: [UInt8] = []
                    b.putU32(info.pgrp)
                    do {
                        try leader.remote.syscall(.ioctl, UInt64(fd), UInt64(TtyIoctl.setPgrp), try leader.put(b))
                    } catch {
                        throw fail("TIOCSPGRP \(info.pgrp) (foreground group) in session leader \(sid): \(error)")
                    }
                }
                try leader.remote.syscall(.close, UInt64(fd))
            }
            if !p.queues.isEmpty {
                do { try PtyQueueIO.refill(master: p.master, slave: p.keeper, termios: Termios2(b: Tty.termiosBytes(info.termios)), p.queues) } catch {
                    throw fail("queueing its data in flight again: \(error)")
                }
            }
            if info.locked {
                var one: Int32 = 1
                guard ck_ioctl(p.master, TtyIoctl.setPtlck, &one) == 0 else { throw fail("TIOCSPTLCK: \(String(cString: strerror(errno)))") }
            }
        }
    }

    /// Once every task has every fd (/dev/tty included): exclusive mode again, on the master
    /// and on the slave as they were.
    func exclusivePtys(shared: RestoredObjects) throws {
        for (_, p) in shared.ptys.made.sorted(by: { $0.key < $1.key }) {
            for (fd, on) in [(p.master, p.info.exclusive), (p.keeper, p.slaveExclusive)] where on {
                guard ck_ioctl_long(fd, TtyIoctl.setExcl, 0) == 0 else {
                    throw RestoreError.file(pid: 0, id: 0, what: "pty \(p.slavePath)", reason: "TIOCEXCL: \(String(cString: strerror(errno)))")
                }
            }
        }
    }
}
