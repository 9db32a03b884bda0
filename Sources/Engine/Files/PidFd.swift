import Glibc

/// pidfd: a handle on a process of the tree (CRIU 4.x's pidfd_entry), made again with
/// pidfd_open on the restored pid, so signals, waitid(P_PIDFD) and poll reach the same
/// process. A pidfd of a process already reaped (nspid -1) comes back as one of a helper
/// process cryo makes and reaps, one per dumped inode (pidfs gives a process one inode). A
/// pidfd of a process outside the tree is refused.
enum PidFd: FdKind {
    static let name = "pidfd"
    static let type = Img_FdTypes.pidfd
    /// PIDFD_NONBLOCK is O_NONBLOCK, PIDFD_THREAD (6.9) is O_EXCL: what pidfd_open takes.
    static let openFlags: UInt32 = UInt32(O_NONBLOCK | O_EXCL)

    static func claims(_ f: OpenFd) -> Bool { f.target == "anon_inode:[pidfd]" }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        guard let pid = f.info.pidfdPid else { throw refuse("fdinfo shows no Pid: line for this pidfd") }
        let thread = UInt32(bitPattern: f.info.flags) & UInt32(O_EXCL) != 0
        guard pid == -1 || ctx.treePids.contains(pid) else {
            throw refuse("a pidfd of \(thread ? "thread" : "pid") \(pid), which is \(thread ? "not a process" : "outside") of the dumped tree")
        }
        var e = Img_PidfdEntry()
        e.id = id
        e.ino = UInt32(truncatingIfNeeded: f.stat.st_ino)
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        if pid == -1 && ctx.pids.nested {
            // cryo remakes it on a helper it reaps, which lives outside the tree's pid
            // namespace: signals through it would say EINVAL there, not ESRCH.
            throw refuse("a pidfd of a reaped process in a tree with its own pid namespace, which cryo cannot make again inside it")
        }
        e.nspid = pid == -1 ? -1 : ctx.pids.image(pid)
        e.fown = FdKinds.noOwner
        entry.pidfd = e
    }

    /// Last, once every process of the tree exists: a parent's pidfd of its child is restored
    /// before the child is forked from it (Restorer.restorePidfds).
    static func restoreStage(_ entry: Img_FileEntry, files: [UInt32: Img_FileEntry]) -> Int { deferredStage }
    static let deferredStage = 4

    /// Pidfds of one process that has exited and been reaped: `count` descriptions of a helper
    /// cryo spawns, opens and reaps (a pidfd opened before the reaping outlives it).
    static func deadPidfds(count: Int, what: String) throws -> [Int32] {
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("true"), nil]
        defer { for a in argv { free(a) } }
        let rc = posix_spawn(&child, "/bin/true", nil, nil, argv, nil)
        guard rc == 0 else { throw SystemCallError(call: "posix_spawn(/bin/true)", errno: rc, context: what) }
        var fds: [Int32] = []
        defer {
            var st: Int32 = 0
            kill(child, SIGKILL)
            while waitpid(child, &st, 0) < 0 && errno == EINTR {}
        }
        do {
            for _ in 0..<count { fds.append(Int32(try Sys.call(.pidfdOpen, Int(child), 0, context: what))) }
        } catch {
            for fd in fds { close(fd) }
            throw error
        }
        return fds
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.pidfd
        // Made with the others of its process by Restorer.restoreDeferredFiles.
        // Opened beforehand by Restorer.restoreDeferredFiles, by the pid cryo sees.
        guard let o = ctx.objects[entry.id] else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: "pidfd of pid \(e.nspid)", reason: "not opened before its task's deferred fds")
        }
        return try ctx.transport.send(o, to: ctx.task, what: e.nspid == -1 ? "pidfd of a reaped process" : "pidfd of pid \(e.nspid)")
    }

    /// A pidfd of `host` (the pid as cryo sees it) with the entry's flags.
    static func open(host: Int32, entry: Img_FileEntry, what: String) throws -> Int32 {
        let e = entry.pidfd
        let fd: Int32
        do {
            fd = Int32(try Sys.call(.pidfdOpen, Int(host), Int(e.flags & openFlags), context: what))
        } catch let err as SystemCallError {
            throw RestoreError.file(pid: host, id: entry.id, what: what, reason: "pidfd_open: \(String(cString: strerror(err.errno)))")
        }
        if fcntl(fd, F_SETFD, FD_CLOEXEC) != 0 { close(fd); throw SystemCallError(call: "fcntl(F_SETFD)", errno: errno, context: what) }
        do { try FileFlags.set(fd, e.flags, what: what) } catch { close(fd); throw error }
        return fd
    }
}
