import CKernel
import Glibc

/// Moves kernel objects cryo built in its own process (pipes, eventfds, sockets...) into the
/// task being restored. cryo creates them where it can call anything and set their state
/// directly; only the final hand-over needs the target: an SCM_RIGHTS message on a unix
/// socketpair whose other end the restore child inherited, and an injected recvmsg that tells
/// us which fd number each object got there.
///
/// The pair is made before the child is created (it inherits `childEnd` through fork). The
/// child keeps its end at `targetFd`, a number above every fd the images want, across the
/// injected close_range, and closes it once all fds are installed (`detach`).
final class FdTransport {
    /// cryo's end: we send on it.
    let local: Int32
    /// The end the child inherits; cryo closes its copy once the child exists.
    private(set) var childEnd: Int32
    /// Where each task holds its end while the tree is restored, by pid. A child forked from a
    /// restored parent inherits the parent's end at the parent's number.
    private(set) var ends: [Int32: Int32] = [:]

    init() throws {
        var sv: [Int32] = [-1, -1]
        // SEQPACKET: one sendmsg is one recvmsg, so a message cannot be split or merged.
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw SystemCallError(call: "socketpair", errno: errno, context: "fd transport")
        }
        local = sv[0]
        childEnd = sv[1]
    }

    deinit {
        if childEnd >= 0 { Glibc.close(childEnd) }
        Glibc.close(local)
    }

    /// The child exists and holds its copy of `childEnd`: cryo no longer needs its own.
    func childCreated() {
        if childEnd >= 0 { Glibc.close(childEnd) }
    }

    /// Moves the inherited end to `fd` in the target and closes every other fd the task
    /// inherited (from cryo, or from its restored parent: `parent`). `fd` must be above every
    /// fd number the restore will install there.
    func keep(in remote: Remote, pid: Int32, at fd: Int32, parent: Int32?) throws {
        precondition(ends[pid] == nil)
        let inherited: Int32
        if let parent {
            guard let e = ends[parent] else { throw RestoreError.transport(pid: pid, what: "the fd channel", call: "inherit from \(parent)", errno: EBADF) }
            inherited = e
        } else {
            inherited = childEnd
            childEnd = -1
        }
        if inherited != fd {
            try remote.syscall(.dup2, UInt64(inherited), UInt64(fd))
        }
        if fd > 0 { try remote.syscall(.closeRange, 0, UInt64(fd - 1), 0) }
        try remote.syscall(.closeRange, UInt64(fd + 1), UInt64(UInt32.max), 0)
        ends[pid] = fd
    }

    /// A task sharing its parent's fd table uses the parent's end.
    func share(pid: Int32, with parent: Int32) { ends[pid] = ends[parent] }

    /// Installs cryo's `fd` into the target; returns the fd number it got there (the lowest
    /// free one). cryo's `fd` stays open: the same object may go to several tasks.
    func send(_ fd: Int32, to t: RestoreTarget, what: String) throws -> Int32 {
        guard let targetFd = ends[t.vpid] else { preconditionFailure("FdTransport.send before keep") }
        var fds = [fd]
        let rc = ck_send_fds(local, &fds, 1)
        if rc < 0 { throw RestoreError.transport(pid: t.pid, what: what, call: "sendmsg", errno: -rc) }

        // struct msghdr, iovec and cmsg space built in the target's scratch area, past the
        // first page that put(string:) uses for paths.
        let base = 8192
        let addr = t.scratch + UInt64(base)
        let iovAt = addr + 64, byteAt = addr + 80, ctlAt = addr + 96
        let ctlLen: UInt64 = 24  // CMSG_SPACE(sizeof(int))
        var b: [UInt8] = []
        b.putU64(0); b.putU64(0)                 // msg_name, msg_namelen (+pad)
        b.putU64(iovAt); b.putU64(1)             // msg_iov, msg_iovlen
        b.putU64(ctlAt); b.putU64(ctlLen)        // msg_control, msg_controllen
        b.putU64(0)                              // msg_flags (+pad)
        b.putU64(0)                              // pad to 64
        b.putU64(byteAt); b.putU64(1)            // iovec
        b.putU64(0); b.putU64(0)                 // the byte, pad
        b += [UInt8](repeating: 0, count: Int(ctlLen))
        _ = try t.put(b, offset: base)
        let n: UInt64
        do {
            n = try t.remote.syscall(.recvmsg, UInt64(targetFd), addr, UInt64(MSG_DONTWAIT))
        } catch RemoteError.syscallFailed(_, _, let e) {
            throw RestoreError.transport(pid: t.pid, what: what, call: "injected recvmsg", errno: e)
        }
        let hdr = try t.remote.readMemory(at: addr, count: 56)
        let ctl = try t.remote.readMemory(at: ctlAt, count: Int(ctlLen))
        let flags = hdr.u32(at: 48)
        guard n == 1, flags & UInt32(MSG_CTRUNC) == 0, ctl.u64(at: 0) == 20,
              ctl.u32(at: 8) == UInt32(SOL_SOCKET), ctl.u32(at: 12) == 1 /* SCM_RIGHTS */ else {
            throw RestoreError.transport(pid: t.pid, what: what, call: "injected recvmsg (no fd arrived: \(n) bytes, flags 0x\(String(flags, radix: 16)))", errno: EPROTO)
        }
        return Int32(bitPattern: ctl.u32(at: 16))
    }

    /// All fds are in and every child is made: the task's end goes away, leaving no trace in
    /// its fd table. A task sharing its table with the owner leaves it to the owner.
    func detach(from remote: Remote, pid: Int32, owner: Bool) throws {
        guard let fd = ends.removeValue(forKey: pid), owner else { return }
        try remote.syscall(.close, UInt64(fd))
    }
}
