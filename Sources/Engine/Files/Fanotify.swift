import CKernel
import Glibc

/// fanotify: the group's init flags and event flags, and its marks (CRIU's FanotifyFileEntry).
/// An inode mark is kept by file handle and the path found through it, as inotify's watches;
/// a mount mark by the mount's path. Restore makes the group in cryo with fanotify_init, adds
/// each mark's mask and ignored mask, and reads fdinfo back: every mark must come back with
/// the same inode or mount, flags and masks, or the restore fails naming it.
///
/// Refused: events queued and not read yet (they cannot be queued again), filesystem marks
/// (CRIU's image has no type for them), mark flags other than FAN_MARK_IGNORED_SURV_MODIFY and
/// FAN_MARK_EVICTABLE, and mount marks in a tree with its own mount namespace (cryo would mark
/// its own mount at that path, not the tree's).
enum Fanotify: FdKind {
    static let name = "fanotify"
    static let type = Img_FdTypes.fanotify
    static let markAdd: UInt32 = 0x1, markMount: UInt32 = 0x10, markIgnoredMask: UInt32 = 0x20
    static let keptMarkFlags: UInt32 = 0x40 | 0x200  // FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE

    static func claims(_ f: OpenFd) -> Bool { f.target == "anon_inode:[fanotify]" }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        try Inotify.refuseQueuedEvents(f, ctx: ctx)
        var e = Img_FanotifyFileEntry()
        e.id = id
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        guard let group = f.info.fanotifyGroup else { throw refuse("fdinfo shows no fanotify flags") }
        e.faflags = group.flags; e.evflags = group.eventFlags
        let mounts = try ctx.proc.mountinfo(pid: f.pid)
        for (i, l) in f.info.fanotifyMarks.enumerated() {
            guard l.mflags & ~keptMarkFlags == 0 else { throw refuse("mark \(i): mark flags 0x\(String(l.mflags, radix: 16)), which cryo does not restore") }
            var m = Img_FanotifyMarkEntry()
            m.id = id
            m.mflags = l.mflags; m.mask = l.mask; m.ignoredMask = l.ignoredMask
            switch l.object {
            case .inode(let ino, let sdev, let htype, let handle):
                func bad(_ r: String) -> DumpError { refuse("mark on inode \(ino): \(r)") }
                guard let htype, !handle.isEmpty else { throw bad("no file handle in fdinfo") }
                guard let mnt = Inotify.mount(ofDevice: sdev, in: mounts) else { throw bad("no mount of its device in the task's mount namespace") }
                let path = try Inotify.resolve(handle: handle, type: htype, mountPoint: "/proc/\(f.pid)/root" + mnt.mountPoint, ino: ino, bad: bad)
                m.type = .inode
                m.sDev = sdev
                var ie = Img_FanotifyInodeMarkEntry()
                ie.iIno = ino
                ie.fHandle = Inotify.fhEntry(handle, type: htype, path: path, mountID: mnt.mountId)
                m.ie = ie
            case .mount(let mntID):
                guard let mnt = mounts.first(where: { $0.mountId == mntID }) else { throw refuse("mark on mount \(mntID), which is not in the task's mount namespace") }
                if let own = ctx.treeNamespaces[.mnt], ctx.hostNamespaces[.mnt] != own {
                    throw refuse("mark on mount \(mnt.mountPoint) in a mount namespace of the tree's own, which cryo cannot mark yet")
                }
                m.type = .mount
                m.sDev = UInt32(mnt.devMajor) << 20 | UInt32(mnt.devMinor)
                var me = Img_FanotifyMountMarkEntry()
                me.mntID = UInt32(bitPattern: mntID)
                me.path = mnt.mountPoint
                m.me = me
            case .other:
                throw refuse("mark \(i) on a whole filesystem (FAN_MARK_FILESYSTEM), which cryo does not restore")
            }
            e.mark.append(m)
        }
        entry.ffy = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.ffy
        let what = "fanotify id \(entry.id)"
        func bad(_ r: String) -> RestoreError { .file(pid: ctx.task.pid, id: entry.id, what: what, reason: r) }
        // Exactly the dumped flags: FAN_CLOEXEC is part of the group as fdinfo shows it.
        let fd = Int32(truncatingIfNeeded: ck_syscall6(SyscallNumber.fanotifyInit.rawValue, Int(e.faflags), Int(e.evflags), 0, 0, 0, 0))
        guard fd >= 0 else { throw bad("fanotify_init(0x\(String(e.faflags, radix: 16)), 0x\(String(e.evflags, radix: 16))): \(String(cString: strerror(ck_errno())))") }
        do {
            // fdinfo lists the newest mark first: added oldest first, they list as dumped.
            for m in e.mark.reversed() {
                let path = m.type == .inode ? m.ie.fHandle.path : m.me.path
                let base = markAdd | m.mflags | (m.type == .mount ? markMount : 0)
                for (flags, mask) in [(base, m.mask), (base | markIgnoredMask, m.ignoredMask)] where mask != 0 {
                    let r = path.withCString { ck_syscall6(SyscallNumber.fanotifyMark.rawValue, Int(fd), Int(flags), Int(mask), Int(AT_FDCWD), Int(bitPattern: $0), 0) }
                    guard r == 0 else { throw bad("mark \(path) (flags 0x\(String(flags, radix: 16)), mask 0x\(String(mask, radix: 16))): \(String(cString: strerror(ck_errno())))") }
                }
            }
            try check(fd, e, bad: bad)
            try FileFlags.set(fd, e.flags, what: what)
        } catch {
            close(fd)
            throw error
        }
        return try ctx.install(fd, id: entry.id, what: what)
    }

    /// The group as the kernel now shows it must be the one dumped: same flags, and each mark
    /// on the same inode or mount path with the same flags and masks.
    static func check(_ fd: Int32, _ e: Img_FanotifyFileEntry, bad: (String) -> RestoreError) throws {
        let info = try ProcReader().fdinfo(pid: getpid(), fd: fd)
        let mounts = try ProcReader().mountinfo(pid: getpid())
        var got: [String] = [], want: [String] = []
        for l in info.fanotifyMarks {
            let key = switch l.object {
            case .inode(let ino, _, _, _): "ino \(ino)"
            case .mount(let id): mounts.first { $0.mountId == id }.map { "mount \($0.mountPoint)" } ?? "filesystem"
            case .other: "filesystem"
            }
            got.append("\(key) mflags \(String(l.mflags, radix: 16)) mask \(String(l.mask, radix: 16)) ignored \(String(l.ignoredMask, radix: 16))")
        }
        for m in e.mark {
            let key = m.type == .inode ? "ino \(m.ie.iIno)" : "mount \(m.me.path)"
            want.append("\(key) mflags \(String(m.mflags, radix: 16)) mask \(String(m.mask, radix: 16)) ignored \(String(m.ignoredMask, radix: 16))")
        }
        guard got.sorted() == want.sorted() else { throw bad("marks came back as \(got.sorted()), not \(want.sorted())") }
        if let g = info.fanotifyGroup, g.flags != e.faflags || g.eventFlags != e.evflags {
            throw bad("flags came back as \(String(g.flags, radix: 16))/\(String(g.eventFlags, radix: 16)), not \(String(e.faflags, radix: 16))/\(String(e.evflags, radix: 16))")
        }
    }
}
