import Glibc

/// epoll: the registered set (fd, events, data). Restore makes the epoll in cryo, sends it,
/// and registers each target with epoll_ctl injected in the task, after every other fd is in
/// place: an epoll registration is keyed by the fd number as well as the file, so it must be
/// made with the task's own numbers.
enum EventPoll: FdKind {
    static let name = "epoll"
    static let type = Img_FdTypes.eventpoll
    static func restoreStage(_ entry: Img_FileEntry, files: [UInt32: Img_FileEntry]) -> Int { 3 }

    static func claims(_ f: OpenFd) -> Bool { f.target == "anon_inode:[eventpoll]" }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        var e = Img_EventpollFileEntry()
        e.id = id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        // The k-th registration with a given fd number (fdinfo lists them in the kernel's
        // order, which kcmp's toff counts in).
        var nth: [Int32: UInt32] = [:]
        for t in f.info.epollTargets {
            let toff = nth[t.tfd, default: 0]
            nth[t.tfd] = toff + 1
            // The registration outlives the fd number it was made with when that fd is closed
            // or reused (another fd keeps the file): it is made again through that other fd.
            var via: Int32?
            let direct = try ctx.fds[t.tfd] != nil && registered(pid: f.pid, epfd: f.fd, tfd: t.tfd, toff: toff, is: t.tfd)
            if !direct {
                for fd in ctx.fds.keys.sorted() where UInt64(ctx.fds[fd]!.stat.st_ino) == t.ino {
                    if try registered(pid: f.pid, epfd: f.fd, tfd: t.tfd, toff: toff, is: fd) { via = fd; break }
                }
                guard via != nil else {
                    throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target,
                                            reason: "registered fd \(t.tfd) (inode \(t.ino)) is open under no number of the task (its file is held elsewhere)")
                }
            }
            let target = ctx.fds[via ?? t.tfd]!
            if target.target == "anon_inode:[eventpoll]" {
                throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "registered fd \(t.tfd) is another epoll, which cryo cannot order yet")
            }
            var x = Img_EventpollTfdEntry()
            x.id = id
            x.tfd = UInt32(t.tfd)
            x.events = t.events
            x.data = t.data
            x.dev = t.sdev
            x.inode = t.ino
            x.pos = UInt64(max(0, t.pos))
            if let via { x.viaFd = UInt32(via) }
            e.tfd.append(x)
        }
        entry.epfd = e
    }

    /// Whether the task's fd `fd` is the file `epfd` has registered as the `toff`-th `tfd`
    /// (kcmp KCMP_EPOLL_TFD, struct kcmp_epoll_slot { u32 efd, tfd, toff }).
    static func registered(pid: Int32, epfd: Int32, tfd: Int32, toff: UInt32, is fd: Int32) throws -> Bool {
        var slot: (UInt32, UInt32, UInt32) = (UInt32(epfd), UInt32(tfd), toff)
        return try withUnsafeMutablePointer(to: &slot) { try Sys.kcmp(pid, pid, type: 7 /* KCMP_EPOLL_TFD */, Int(fd), Int(bitPattern: $0)) } == 0
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.epfd
        let what = "epoll id \(entry.id)"
        let fd = Int32(try Sys.call(.epollCreate1, Int(O_CLOEXEC), context: what))
        do { try FileFlags.set(fd, e.flags, what: what) } catch { close(fd); throw error }
        let got = try ctx.install(fd, id: entry.id, what: what)
        for t in e.tfd {
            // struct epoll_event is packed on x86_64: u32 events, u64 data.
            var ev: [UInt8] = []
            ev.putU32(t.events); ev.putU64(t.data)
            let at = try ctx.task.put(ev, offset: 12288)
            do {
                if t.hasViaFd {
                    try register(through: Int32(t.viaFd), as: Int32(t.tfd), epfd: got, event: at, remote: ctx.task.remote)
                } else {
                    try ctx.task.remote.syscall(.epollCtl, UInt64(got), 1 /* EPOLL_CTL_ADD */, UInt64(t.tfd), at)
                }
            } catch RemoteError.syscallFailed(_, _, let err) {
                throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what,
                                        reason: "register fd \(t.tfd) (events 0x\(String(t.events, radix: 16))): \(String(cString: strerror(err)))")
            }
        }
        return got
    }

    /// Registers the file at `via` under the number `tfd`, which the task may use for another
    /// file: that one is moved aside (with its close-on-exec flag) and put back.
    static func register(through via: Int32, as tfd: Int32, epfd: Int32, event: UInt64, remote: Remote) throws {
        let fdFlags = try? remote.syscall(.fcntl, UInt64(tfd), UInt64(F_GETFD))
        var aside: UInt64?
        if fdFlags != nil { aside = try remote.syscall(.fcntl, UInt64(tfd), UInt64(F_DUPFD), 0) }
        try remote.syscall(.dup2, UInt64(via), UInt64(tfd))
        try remote.syscall(.epollCtl, UInt64(epfd), 1 /* EPOLL_CTL_ADD */, UInt64(tfd), event)
        if let a = aside, let fl = fdFlags {
            try remote.syscall(.dup2, a, UInt64(tfd))
            try remote.syscall(.close, a)
            if fl != 0 { try remote.syscall(.fcntl, UInt64(tfd), UInt64(F_SETFD), fl) }
        } else {
            try remote.syscall(.close, UInt64(tfd))
        }
    }
}
