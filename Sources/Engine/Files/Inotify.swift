import CKernel
import Glibc

/// inotify: its watches (watch descriptor, mask, and the watched inode's path). fdinfo gives
/// each watched inode as a file handle; cryo opens it (open_by_handle_at on the filesystem's
/// mount) to learn a path, and records path and handle. Restore adds the watches in cryo in
/// wd order, removing any that came out with a lower wd than wanted (wds are allocated
/// cyclically), then drops the IN_IGNORED events that removal queued. A group with events
/// queued at dump time is refused (FIONREAD), since they cannot be queued again.
enum Inotify: FdKind {
    static let name = "inotify"
    static let type = Img_FdTypes.inotify

    static func claims(_ f: OpenFd) -> Bool { f.target == "anon_inode:inotify" }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        var e = Img_InotifyFileEntry()
        e.id = id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        try refuseQueuedEvents(f, ctx: ctx)
        let mounts = try ctx.proc.mountinfo(pid: f.pid)
        for w in f.info.inotifyWatches.sorted(by: { $0.wd < $1.wd }) {
            func bad(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "watch \(w.wd) (inode \(w.ino)): \(r)") }
            guard let htype = w.fhandleType, !w.fhandle.isEmpty else { throw bad("the kernel shows no file handle") }
            guard let m = mount(ofDevice: w.sdev, in: mounts) else {
                throw bad("no mount of device \(w.sdev >> 20):\(w.sdev & 0xfffff) in the task's mount namespace")
            }
            var x = Img_InotifyWdEntry()
            let path = try resolve(handle: w.fhandle, type: htype, mountPoint: "/proc/\(f.pid)/root" + m.mountPoint, ino: w.ino, bad: bad)
            x.fHandle = fhEntry(w.fhandle, type: htype, path: path, mountID: m.mountId)
            x.id = id
            x.iIno = w.ino
            x.mask = w.mask
            x.ignoredMask = w.ignoredMask
            x.sDev = w.sdev
            x.wd = UInt32(bitPattern: w.wd)
            e.wd.append(x)
        }
        entry.ify = e
    }

    /// Events already queued cannot be queued again: a group holding any is refused, with
    /// their size, rather than restored without them.
    static func refuseQueuedEvents(_ f: OpenFd, ctx: FileDumpContext) throws {
        let c = try ctx.copy(of: f)
        var n: Int32 = 0
        guard ck_ioctl(c, 0x541b /* FIONREAD */, &n) == 0 else { throw SystemCallError(call: "ioctl(FIONREAD)", errno: errno, context: "pid \(f.pid) fd \(f.fd)") }
        if n > 0 {
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "\(n) bytes of events queued and not read yet, which cannot be queued again")
        }
    }

    /// The mount of the device `sdev` (fdinfo's encoding, major << 20 | minor) in `mounts`.
    static func mount(ofDevice sdev: UInt32, in mounts: [ProcMount]) -> ProcMount? {
        mounts.first { $0.devMajor == sdev >> 20 && $0.devMinor == sdev & 0xfffff }
    }

    /// CRIU's FhEntry: the handle's bytes as little-endian words, its type, and the path found.
    static func fhEntry(_ handle: [UInt8], type: Int32, path: String, mountID: Int32) -> Img_FhEntry {
        var fh = Img_FhEntry()
        fh.bytes = UInt32(handle.count)
        fh.type = UInt32(bitPattern: type)
        var words = [UInt64](repeating: 0, count: (handle.count + 7) / 8)
        for (i, b) in handle.enumerated() { words[i / 8] |= UInt64(b) << (8 * UInt64(i % 8)) }
        fh.handle = words
        fh.path = path
        fh.mntID = UInt32(bitPattern: mountID)
        return fh
    }

    /// The path of the inode behind a file handle, as cryo sees it.
    static func resolve(handle: [UInt8], type: Int32, mountPoint: String, ino: UInt64, bad: (String) -> DumpError) throws -> String {
        // Not O_PATH: open_by_handle_at does not take an O_PATH mount fd (EBADF).
        let mfd = open(mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard mfd >= 0 else { throw bad("open mount \(mountPoint): \(String(cString: strerror(errno)))") }
        defer { close(mfd) }
        // struct file_handle: u32 handle_bytes, int handle_type, then the bytes.
        var fh: [UInt8] = []
        fh.putU32(UInt32(handle.count)); fh.putU32(UInt32(bitPattern: type)); fh += handle
        let fd = try fh.withUnsafeMutableBytes { p -> Int32 in
            let r = ck_syscall6(SyscallNumber.openByHandleAt.rawValue, Int(mfd), Int(bitPattern: p.baseAddress!), Int(FileFlags.path | O_CLOEXEC), 0, 0, 0)
            if r < 0 { throw bad("open_by_handle_at: \(String(cString: strerror(ck_errno())))") }
            return Int32(r)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, UInt64(st.st_ino) == ino else { throw bad("the handle opens another inode") }
        let path: String
        do { path = try ProcReader().readLink("/proc/self/fd/\(fd)") } catch { throw bad("\(error)") }
        guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { throw bad("the watched file has no path (\(path))") }
        return path
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.ify
        let what = "inotify id \(entry.id)"
        let fd = inotify_init1(O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw SystemCallError(call: "inotify_init1", errno: errno, context: what) }
        do {
            var removed = false
            for w in e.wd.sorted(by: { $0.wd < $1.wd }) {
                let path = w.fHandle.path
                let want = Int32(bitPattern: w.wd)
                while true {
                    // The mask as fdinfo shows it is what inotify_add_watch takes.
                    let got = inotify_add_watch(fd, path, w.mask)
                    guard got >= 0 else {
                        throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "watch \(path): \(String(cString: strerror(errno)))")
                    }
                    if got == want { break }
                    guard got < want else {
                        throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "watch \(path) got wd \(got), past the wanted \(want)")
                    }
                    inotify_rm_watch(fd, got)
                    removed = true
                }
            }
            if removed {
                var buf = [UInt8](repeating: 0, count: 4096)
                while read(fd, &buf, buf.count) > 0 {}
            }
            try FileFlags.set(fd, e.flags, what: what)
        } catch {
            close(fd)
            throw error
        }
        return try ctx.install(fd, id: entry.id, what: what)
    }
}
