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
        for t in f.info.epollTargets {
            // The registration outlives the fd number it was made with when that fd is closed
            // (another description keeps the file); it could not be made again by number.
            guard let target = ctx.fds[t.tfd], UInt64(target.stat.st_ino) == t.ino else {
                throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target,
                                        reason: "registered fd \(t.tfd) (inode \(t.ino)) is no longer open under that number")
            }
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
            e.tfd.append(x)
        }
        entry.epfd = e
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
                try ctx.task.remote.syscall(.epollCtl, UInt64(got), 1 /* EPOLL_CTL_ADD */, UInt64(t.tfd), at)
            } catch RemoteError.syscallFailed(_, _, let err) {
                throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what,
                                        reason: "register fd \(t.tfd) (events 0x\(String(t.events, radix: 16))): \(String(cString: strerror(err)))")
            }
        }
        return got
    }
}
