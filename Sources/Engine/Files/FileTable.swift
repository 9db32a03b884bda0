import Foundation
import Glibc

/// The files.img of one dump: every open file, mapped file, cwd and root gets an id here;
/// fdinfo images point at these ids.
final class FileTable: @unchecked Sendable {
    private(set) var entries: [Img_FileEntry] = []
    private var byPath: [String: UInt32] = [:]
    private var nextID: UInt32 = 1
    /// Deleted-but-open files go into ghost images as they are found (CRIU's remap scheme).
    let ghosts: GhostFileDumper

    init(images: ImageDirectory) { ghosts = GhostFileDumper(images: images) }

    /// A file known by path (mapped file, cwd, root, exe): one id per path. A deleted file is
    /// read through `source` (/proc/PID/map_files/..., /proc/PID/exe) into a ghost image.
    func register(path: String, pid: Int32, flags: Int32, mapping: ProcMapping? = nil, source: String? = nil) throws -> UInt32 {
        if let id = byPath[path] { return id }
        if path.hasPrefix("/memfd:") {
            throw DumpError.unsupported(pid: pid, what: "memfd \(path) known by path only")
        }
        if path.hasSuffix(" (deleted)") {
            let src = source ?? mapping.map { "/proc/\(pid)/map_files/\(String($0.start, radix: 16))-\(String($0.end, radix: 16))" }
            guard let src else { throw DumpError.unsupported(pid: pid, what: "deleted file \(path) with no way to read it") }
            let id = nextID; nextID += 1
            var e = Img_FileEntry()
            e.type = .reg
            e.id = id
            e.reg = try ghosts.entry(path: path, source: src, pid: pid, id: id, flags: UInt32(bitPattern: flags), pos: 0)
            entries.append(e)
            byPath[path] = id
            return id
        }
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw DumpError.unsupported(pid: pid, what: "file \(path) (\(String(cString: strerror(errno))))")
        }
        let id = nextID; nextID += 1
        var e = Img_FileEntry()
        e.type = .reg
        e.id = id
        e.reg = RegularFile.entryFor(path: path, id: id, flags: UInt32(bitPattern: flags), pos: 0,
                                     size: st.st_mode & S_IFMT == S_IFREG ? UInt64(st.st_size) : nil, mode: st.st_mode)
        entries.append(e)
        byPath[path] = id
        return id
    }

    /// A mapping of a shmem inode that is not shared anonymous memory (a memfd, or a private
    /// mapping of shared anonymous memory): a memfd file entry, one per inode, whose object the
    /// restore makes once for every fd and mapping of it. Nil when `m` is not on shmem.
    func registerShmemMapping(_ m: ProcMapping, pid: Int32) throws -> UInt32? {
        let src = "/proc/\(pid)/map_files/\(String(m.start, radix: 16))-\(String(m.end, radix: 16))"
        let c = open(src, O_RDONLY | O_CLOEXEC)
        guard c >= 0 else { throw DumpError.unsupported(pid: pid, what: "mapping \(m.path) at 0x\(String(m.start, radix: 16)): cannot open \(src) (\(String(cString: strerror(errno))))") }
        defer { close(c) }
        var st = stat()
        guard fstat(c, &st) == 0, st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_dev) == MemFd.shmemDev else { return nil }
        let key = "shmem:\(st.st_ino)"
        if let id = byPath[key] { return id }
        let shmid = try MemFd.inode(c, target: m.path, stat: st, ctx: context) { reason in
            DumpError.unsupported(pid: pid, what: "mapping \(m.path) at 0x\(String(m.start, radix: 16)): \(reason)")
        }
        let id = nextID; nextID += 1
        var e = Img_FileEntry()
        e.type = .memfd
        e.id = id
        e.memfd.id = id
        e.memfd.flags = UInt32(bitPattern: m.shared && m.writable ? O_RDWR : O_RDONLY)
        e.memfd.pos = 0
        e.memfd.fown = FdKinds.noOwner
        e.memfd.inodeID = shmid
        entries.append(e)
        byPath[key] = id
        return id
    }

    /// Every fd dumped so far, for telling open file descriptions apart: two fds share a
    /// files.img entry exactly when kcmp(KCMP_FILE) says they are one description.
    private var described: [(pid: Int32, fd: Int32, dev: UInt64, ino: UInt64, id: UInt32)] = []
    /// The fds being dumped now, outermost first: a socket's queue can hold files in flight,
    /// which are dumped while the socket is. One of them in flight again is a cycle.
    private var dumping: [OpenFd] = []
    private(set) lazy var context: FileDumpContext = {
        let c = FileDumpContext(proc: ProcReader())
        c.dumpInFlight = { [unowned self] fd, carrier in try self.dumpInFlight(fd, carrier: carrier) }
        return c
    }()

    /// The kinds a file in flight may be: restore makes them in cryo alone when no task holds
    /// them, which the others (inotify watches, epoll sets, TCP repair...) could not do.
    static let inFlightKinds: [any FdKind.Type] = [RegularFile.self, PipeFile.self, UnixSocket.self]

    /// The pids of the dumped tree: what files may be shared with.
    func dumping(_ pids: [Int32]) { context.treePids.formUnion(pids) }

    /// Dumps every fd of `pid` into fdinfo-PID.img. An fd no kind claims fails the dump,
    /// naming the fd, its kind and its target.
    func dumpFds(pid: Int32, proc: ProcReader, images: ImageDirectory, imageID: Int32? = nil) throws {
        var infos: [Img_FdinfoEntry] = []
        var open: [Int32: OpenFd] = [:]
        let fds = try proc.fds(pid: pid)
        for fd in fds {
            let target = try proc.fdTarget(pid: pid, fd: fd)
            let info = try proc.fdinfo(pid: pid, fd: fd)
            var st = stat()
            if stat("/proc/\(pid)/fd/\(fd)", &st) != 0 { st = Glibc.stat() }
            open[fd] = OpenFd(pid: pid, fd: fd, target: target, info: info, stat: st)
        }
        let ctx = context
        try ctx.beginTask(pid: pid, fds: open)
        defer { ctx.endTask() }
        for fd in fds {
            let f = open[fd]!
            let (id, type) = try dump(f, kinds: FdKinds.all) { kind in
                DumpError.unsupportedFd(pid: pid, fd: fd, kind: kind, target: f.target)
            }
            infos.append(fdinfo(id: id, fd: fd, flags: f.info.flags, type: type))
            // Every fd, not only a description's first: a POSIX lock shows only in its owner's.
            try ctx.locks.note(f, id: id, treePids: ctx.treePids) { try Sys.kcmp(pid, $0, type: 2 /* KCMP_FILES */, 0, 0) == 0 }
            try Fault.check(.files)
        }
        try images.write(.fdinfo, id: Int(imageID ?? pid), entries: infos)
    }

    /// The id of `f`: the one of a dumped fd of the same description, else a new entry made by
    /// the kind that claims it (among `kinds`; `refuse` names what nothing there claims).
    private func dump(_ f: OpenFd, kinds: [any FdKind.Type], refuse: (String) -> DumpError) throws -> (id: UInt32, type: Img_FdTypes) {
        let claimed = FdKinds.all.first(where: { $0.claims(f) })
        // A regular file deleted while open: no kind takes it, its bytes go to a ghost image.
        let ghost = claimed == nil && f.stat.st_mode & S_IFMT == S_IFREG && f.target.hasPrefix("/") && f.target.hasSuffix(" (deleted)")
        guard claimed != nil || ghost else { throw refuse(FdKinds.describe(f)) }
        if let k = claimed, !kinds.contains(where: { ObjectIdentifier($0) == ObjectIdentifier(k) }) { throw refuse(k.name) }
        let type = claimed?.type ?? .reg
        // A kind may write another type than it claims (a shell job's pty slave is a path).
        if let same = try sameDescription(f) { return (same, entries.first { $0.id == same }?.type ?? type) }
        try FdChecks.check(f, ctx: context)
        let id = nextID; nextID += 1
        var e = Img_FileEntry()
        e.type = type
        e.id = id
        dumping.append(f)
        defer { dumping.removeLast() }
        if let kind = claimed {
            try kind.dump(f, id: id, into: &e, ctx: context)
        } else {
            e.reg = try ghosts.entry(path: f.target, source: "/proc/\(f.pid)/fd/\(f.fd)", pid: f.pid, id: id,
                                     flags: UInt32(bitPattern: f.info.flags), pos: UInt64(max(0, f.info.pos)))
        }
        if let o = try FileOwner.dump(f, copy: try context.copy(of: f), ctx: context), !FileOwner.store(o, in: &e) {
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target,
                                    reason: "F_SETOWN owner or F_SETSIG signal on a \(claimed?.name ?? "file"), whose image has no place for it")
        }
        entries.append(e)
        described.append((f.pid, f.fd, UInt64(f.stat.st_dev), UInt64(f.stat.st_ino), id))
        return (id, e.type)
    }

    /// The id of a file in flight in the queue of `carrier` (cryo's `fd`, from a peek): the
    /// description a dumped fd has, or a new entry dumped from cryo's fd, which stays open
    /// (FileDumpContext.inFlight) for the fds dumped later to be compared with.
    private func dumpInFlight(_ fd: Int32, carrier: OpenFd) throws -> UInt32 {
        let me = getpid()
        let proc = context.proc
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw SystemCallError(call: "fstat", errno: errno, context: "a file in flight in pid \(carrier.pid) fd \(carrier.fd)") }
        let f = OpenFd(pid: me, fd: fd, target: try proc.fdTarget(pid: me, fd: fd), info: try proc.fdinfo(pid: me, fd: fd), stat: st)
        func refuse(_ kind: String, _ reason: String) -> DumpError {
            .inFlight(pid: carrier.pid, fd: carrier.fd, target: carrier.target, kind: kind, reason: reason)
        }
        // Sent over itself, or around a cycle: its queue could only be refilled by a socket
        // that already exists, and restore makes each from its queue.
        for d in dumping where d.stat.st_dev == st.st_dev && d.stat.st_ino == st.st_ino {
            if try Sys.kcmp(me, d.pid, type: 0 /* KCMP_FILE */, Int(fd), Int(d.fd)) == 0 {
                throw refuse("unix socket", "it is the socket itself, or a socket whose queue holds this one (a cycle), which cryo does not restore")
            }
        }
        if let same = try sameDescription(f) {
            if let e = entries.first(where: { $0.id == same }), e.hasUsk, !e.usk.name.isEmpty || e.usk.state == UnixSocket.listen {
                throw refuse("unix socket", "it is bound to a name or listening, which cryo restores only in a task, not in flight")
            }
            return same
        }
        let kind = FdKinds.all.first(where: { $0.claims(f) })?.name ?? FdKinds.describe(f)
        do {
            return try dump(f, kinds: FileTable.inFlightKinds) { k in
                refuse(k, "cryo restores only regular files, pipes and unix sockets in flight")
            }.id
        } catch DumpError.fdState(let pid, _, _, let reason) where pid == me {
            // Said of cryo's fd, which means nothing to the user: said of the socket instead.
            throw refuse(kind, reason)
        }
    }

    private func fdinfo(id: UInt32, fd: Int32, flags: Int32, type: Img_FdTypes) -> Img_FdinfoEntry {
        var fi = Img_FdinfoEntry()
        fi.id = id
        fi.flags = flags & O_CLOEXEC != 0 ? UInt32(O_CLOEXEC) : 0
        fi.type = type
        fi.fd = UInt32(fd)
        return fi
    }

    /// The id of an fd already dumped that is the same open file description as `f`.
    private func sameDescription(_ f: OpenFd) throws -> UInt32? {
        for d in described where d.dev == UInt64(f.stat.st_dev) && d.ino == UInt64(f.stat.st_ino) {
            if try Sys.kcmp(f.pid, d.pid, type: 0 /* KCMP_FILE */, Int(f.fd), Int(d.fd)) == 0 { return d.id }
        }
        return nil
    }

    func write(to images: ImageDirectory) throws {
        try context.write(to: images)
        try images.write(.files, entries: entries + context.extraEntries)
        if !ghosts.remaps.isEmpty { try images.write(.remapFpath, entries: ghosts.remaps) }
        context.closeInFlight()
    }
}
