import CKernel
import Glibc

/// The F_SETOWN owner and F_SETSIG signal of an open file description: who gets SIGIO/SIGURG
/// (or the F_SETSIG signal) for it. CRIU's FownEntry, which each kind's entry carries.
///
/// The owner is a thread, a process or a process group of the tree (anything else is refused:
/// it would not exist after restore). The kernel also keeps the uid and euid of whoever set
/// the owner, and checks them against the receiver's before it signals; they are read with
/// F_GETOWNER_UIDS and set again from a cryo thread that takes those ids for the call. The
/// owner is set once every task of the tree exists, on the restored description itself.
enum FileOwner {
    static let getOwnEx: Int32 = 16, setOwnEx: Int32 = 15, getSig: Int32 = 11, setSig: Int32 = 10, getOwnerUids: Int32 = 17
    static let ownerKinds = ["thread", "process", "process group"]

    /// The owner and signal of `f` (read through cryo's copy `c`), with pids as the images
    /// name them; nil when it has neither.
    static func dump(_ f: OpenFd, copy c: Int32, ctx: FileDumpContext) throws -> Img_FownEntry? {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        // struct f_owner_ex { int type; pid_t pid; }
        var owner: (Int32, Int32) = (0, 0)
        guard fcntl(c, getOwnEx, &owner) == 0 else { throw SystemCallError(call: "fcntl(F_GETOWN_EX)", errno: errno, context: "pid \(f.pid) fd \(f.fd)") }
        let sig = fcntl(c, getSig)
        guard sig >= 0 else { throw SystemCallError(call: "fcntl(F_GETSIG)", errno: errno, context: "pid \(f.pid) fd \(f.fd)") }
        // A lease's owner is its holder, set again by the lease itself.
        if owner.1 != 0 && ctx.locks.ownerIsLease(f, ownerType: owner.0, pid: owner.1) { owner = (0, 0) }
        guard owner.1 != 0 || sig != 0 else { return nil }
        var o = FdKinds.noOwner
        o.signum = UInt32(sig)
        guard owner.1 != 0 else { return o }
        let kind = ownerKinds[Int(max(0, min(2, owner.0)))]
        guard inTree(type: owner.0, pid: owner.1, ctx: ctx) else {
            throw refuse("F_SETOWN owner \(kind) \(owner.1) is outside the dumped tree, so it would not exist after restore")
        }
        var uids: (UInt32, UInt32) = (0, 0)
        guard fcntl(c, getOwnerUids, &uids) == 0 else {
            throw refuse("F_SETOWN owner \(kind) \(owner.1): F_GETOWNER_UIDS failed (\(String(cString: strerror(errno)))), so the ids the kernel checks before signalling cannot be kept")
        }
        o.pidType = UInt32(owner.0)
        o.pid = UInt32(bitPattern: ctx.pids.image(owner.1))
        o.uid = uids.0; o.euid = uids.1
        return o
    }

    static func inTree(type: Int32, pid: Int32, ctx: FileDumpContext) -> Bool {
        switch type {
        case 1: return ctx.treePids.contains(pid)
        case 0: return ((try? ctx.proc.status(pid: pid))?.tgid).map { ctx.treePids.contains($0) } ?? false
        default: return ctx.treePids.contains { (try? ctx.proc.stat(pid: $0))?.pgrp == pid }
        }
    }

    /// Where the kind's own entry keeps its owner; nil when it has no owner field.
    static func path(_ type: Img_FdTypes) -> WritableKeyPath<Img_FileEntry, Img_FownEntry>? {
        switch type {
        case .reg: return \.reg.fown
        case .inetsk: return \.isk.fown
        case .unixsk: return \.usk.fown
        case .pipe: return \.pipe.fown
        case .eventfd: return \.efd.fown
        case .eventpoll: return \.epfd.fown
        case .signalfd: return \.sgfd.fown
        case .timerfd: return \.tfd.fown
        case .inotify: return \.ify.fown
        case .fanotify: return \.ffy.fown
        case .tty: return \.tty.fown
        case .memfd: return \.memfd.fown
        case .pidfd: return \.pidfd.fown
        default: return nil
        }
    }

    /// Puts `o` into the kind's own entry; false when the kind's entry has no owner field.
    static func store(_ o: Img_FownEntry, in e: inout Img_FileEntry) -> Bool {
        guard let p = path(e.type) else { return false }
        e[keyPath: p] = o
        return true
    }

    static func stored(in e: Img_FileEntry) -> Img_FownEntry? {
        guard let p = path(e.type) else { return nil }
        let o = e[keyPath: p]
        return o.pid != 0 || o.signum != 0 ? o : nil
    }

    /// Sets `o` on the description `fd` (cryo's); `host` maps an image pid of the tree to the
    /// one the kernel knows, nil when the tree has no such task.
    static func restore(_ o: Img_FownEntry, fd: Int32, what: String, host: (Int32) -> Int32?) throws {
        if o.signum != 0 {
            guard fcntl(fd, setSig, Int32(o.signum)) == 0 else { throw SystemCallError(call: "fcntl(F_SETSIG, \(o.signum))", errno: errno, context: what) }
        }
        guard o.pid != 0 else { return }
        let kind = ownerKinds[Int(min(2, o.pidType))]
        guard let pid = host(Int32(bitPattern: o.pid)) else {
            throw RestoreError.unsupported("\(what): its F_SETOWN owner, \(kind) \(o.pid), is not in the restored tree")
        }
        // The ids are the calling thread's: a thread of cryo's own takes them, raw (glibc's
        // setresuid would change every thread of cryo), and ends with the call.
        try NamespaceThread.run(in: [], of: getpid()) {
            if o.uid != 0 || o.euid != 0 {
                guard ck_syscall6(117 /* setresuid */, Int(o.uid), Int(o.euid), -1, 0, 0, 0) == 0 else {
                    throw SystemCallError(call: "setresuid(\(o.uid), \(o.euid))", errno: ck_errno(), context: what)
                }
            }
            var owner: (Int32, Int32) = (Int32(o.pidType), pid)
            guard fcntl(fd, setOwnEx, &owner) == 0 else {
                throw SystemCallError(call: "fcntl(F_SETOWN_EX, \(kind) \(pid))", errno: errno, context: what)
            }
        }
    }
}
