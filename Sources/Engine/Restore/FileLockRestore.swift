import Glibc

/// file-lock.img: each lock is taken again by the task that held it, through its restored fd,
/// before any task runs (so a task that was waiting for it waits again). Non-blocking: a
/// lock someone else holds now fails the restore, naming it.
extension Restorer {
    /// The locks of the images, checked against the tree before anything is created.
    func loadFileLocks(_ images: ImageDirectory, plans: [Plan]) throws -> [Img_FileLockEntry] {
        guard images.exists(.fileLocks) else { return [] }
        let locks = try images.read(.fileLocks, as: Img_FileLockEntry.self)
        let file = images.filePath(.fileLocks)
        for (i, l) in locks.enumerated() {
            func bad(_ why: String) -> ImageError { .inconsistent(file: file, offset: 0, reason: "lock \(i) (pid \(l.pid), fd \(l.fd)): \(why)") }
            guard let p = plans.first(where: { $0.pid == l.pid }), !p.isZombie else { throw bad("no such live process in the tree") }
            // A task sharing its parent's fd table has its parent's fds.
            let owner = sharesFiles(p) ? plans.first(where: { $0.pid == p.ppid }) ?? p : p
            guard owner.fdinfo.contains(where: { Int32($0.fd) == l.fd }) else { throw bad("the process has no such fd") }
            guard [FileLockDumper.Flag.posix, FileLockDumper.Flag.flock, FileLockDumper.Flag.ofd, FileLockDumper.Flag.lease].contains(l.flag) else {
                throw bad("unknown kind \(l.flag)")
            }
            guard l.type <= 1 else { throw bad("type \(l.type) (only F_RDLCK and F_WRLCK are restored)") }
            guard l.start >= 0, l.len >= 0 else { throw bad("range \(l.start)+\(l.len)") }
        }
        return locks
    }

    /// Takes again, in task `t` (pid `pid`), the locks it held.
    func restoreFileLocks(_ t: RestoreTarget, pid: Int32, locks: [Img_FileLockEntry], files: [UInt32: Img_FileEntry], fdinfo: [Img_FdinfoEntry]) throws {
        for l in locks where l.pid == pid {
            let kind: String, call: () throws -> UInt64
            let type = l.type == 0 ? "read" : "write"
            switch l.flag {
            case FileLockDumper.Flag.flock:
                kind = l.type == 0 ? "flock LOCK_SH" : "flock LOCK_EX"
                call = { try t.remote.syscall(.flock, UInt64(l.fd), UInt64((l.type == 0 ? LOCK_SH : LOCK_EX) | LOCK_NB)) }
            case FileLockDumper.Flag.posix, FileLockDumper.Flag.ofd:
                let ofd = l.flag == FileLockDumper.Flag.ofd
                kind = "\(ofd ? "OFD" : "POSIX") \(type) lock on bytes \(l.start)" + (l.len == 0 ? " to EOF" : "..\(l.start + l.len - 1)")
                // struct flock { short l_type, l_whence; off_t l_start, l_len; pid_t l_pid; }
                var fl: [UInt8] = []
                fl.putU32(l.type)  // l_type, l_whence = SEEK_SET
                fl.putU32(0)
                fl.putU64(UInt64(bitPattern: l.start)); fl.putU64(UInt64(bitPattern: l.len)); fl.putU64(0)
                call = { try t.remote.syscall(.fcntl, UInt64(l.fd), UInt64(ofd ? 37 /* F_OFD_SETLK */ : F_SETLK), try t.put(fl, offset: 4096)) }
            default:
                kind = "\(type) lease"
                call = { try t.remote.syscall(.fcntl, UInt64(l.fd), 1024 /* F_SETLEASE */, UInt64(l.type)) }
            }
            let id = fdinfo.first { Int32($0.fd) == l.fd }?.id ?? 0
            let what = files[id].map { $0.hasReg ? $0.reg.name : "fd \(l.fd)" } ?? "fd \(l.fd)"
            do {
                _ = try call()
            } catch RemoteError.syscallFailed(_, _, let e) {
                let why = e == EAGAIN || e == EWOULDBLOCK ? "another process holds a conflicting lock now" : String(cString: strerror(e))
                throw RestoreError.file(pid: pid, id: id, what: what, reason: "fd \(l.fd): taking its \(kind) again: \(why)")
            }
            log.debug("pid \(pid) fd \(l.fd) (\(what)): \(kind) taken again")
        }
    }
}
