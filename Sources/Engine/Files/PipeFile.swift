import CKernel
import Glibc

/// Data in flight in a pipe or FIFO, taken without consuming it: tee() duplicates the pipe's
/// buffers into a private pipe, which cryo then reads.
enum PipeData {
    static let getSize: Int32 = 1032  // F_GETPIPE_SZ
    static let setSize: Int32 = 1031  // F_SETPIPE_SZ

    /// The bytes in the pipe behind `fd` (a read-side fd) and its size.
    static func peek(_ fd: Int32, what: String) throws -> (bytes: [UInt8], size: UInt32) {
        let size = ck_fcntl_int(fd, getSize, 0)
        guard size > 0 else { throw SystemCallError(call: "fcntl(F_GETPIPE_SZ)", errno: errno, context: what) }
        var avail: Int32 = 0
        guard ck_ioctl(fd, UInt(FIONREAD), &avail) == 0 else { throw SystemCallError(call: "ioctl(FIONREAD)", errno: errno, context: what) }
        if avail == 0 { return ([], UInt32(size)) }
        var p: [Int32] = [-1, -1]
        try p.withUnsafeMutableBufferPointer { _ = try Sys.call(.pipe2, Int(bitPattern: $0.baseAddress!), Int(O_CLOEXEC | O_NONBLOCK), context: what) }
        defer { close(p[0]); close(p[1]) }
        // As many buffers as the source can hold, so one tee takes them all.
        if ck_fcntl_int(p[1], setSize, size) < 0 { throw SystemCallError(call: "fcntl(F_SETPIPE_SZ \(size))", errno: errno, context: what) }
        let n = try Sys.call(.tee, Int(fd), Int(p[1]), Int(avail), 2 /* SPLICE_F_NONBLOCK */, context: what)
        guard n == Int(avail) else {
            throw SystemCallError(call: "tee (copied \(n) of \(avail) bytes)", errno: EAGAIN, context: what)
        }
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let r = out.withUnsafeMutableBytes { read(p[0], $0.baseAddress! + got, n - got) }
            guard r > 0 else { throw SystemCallError(call: "read", errno: r < 0 ? errno : EIO, context: what + " (private pipe)") }
            got += r
        }
        return (out, UInt32(size))
    }

    /// A read-side fd on the pipe behind the task's `fd`: the task's own description if it
    /// reads, else a new one through /proc (opening a pipe's read side never blocks with
    /// O_NONBLOCK and takes nothing out of it).
    static func readable(_ f: OpenFd, ctx: FileDumpContext) throws -> (fd: Int32, owned: Bool) {
        if f.info.flags & O_ACCMODE == O_RDONLY || f.info.flags & O_ACCMODE == O_RDWR {
            return (try ctx.copy(of: f), false)
        }
        let fd = open("/proc/\(f.pid)/fd/\(f.fd)", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "open its read side: \(String(cString: strerror(errno)))") }
        return (fd, true)
    }

    /// Records the pipe's data once per pipe (by inode) into `into`.
    static func record(_ f: OpenFd, pipeID: UInt32, into list: inout [(Img_PipeDataEntry, [UInt8])], ctx: FileDumpContext) throws {
        guard ctx.pipesSeen.insert("\(f.stat.st_dev):\(f.stat.st_ino)").inserted else { return }
        let (fd, owned) = try readable(f, ctx: ctx)
        defer { if owned { close(fd) } }
        let (bytes, size): ([UInt8], UInt32)
        do { (bytes, size) = try peek(fd, what: "pid \(f.pid) fd \(f.fd)") } catch {
            throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target, reason: "reading data in flight: \(error)")
        }
        var d = Img_PipeDataEntry()
        d.pipeID = pipeID
        d.bytes = UInt32(bytes.count)
        d.size = size
        list.append((d, bytes))
    }

    /// Sizes the pipe behind the write-side `fd` and refills it.
    static func refill(_ fd: Int32, data: (Img_PipeDataEntry, [UInt8])?, what: String) throws {
        guard let (d, bytes) = data else { return }
        if d.hasSize && d.size > 0 && ck_fcntl_int(fd, getSize, 0) != Int32(d.size) {
            guard ck_fcntl_int(fd, setSize, Int32(d.size)) >= 0 else {
                throw SystemCallError(call: "fcntl(F_SETPIPE_SZ \(d.size))", errno: errno, context: what)
            }
        }
        var off = 0
        while off < bytes.count {
            let r = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, bytes.count - off) }
            guard r > 0 else { throw SystemCallError(call: "write (\(off) of \(bytes.count) bytes in)", errno: errno, context: what) }
            off += r
        }
    }
}

/// Anonymous pipes. Each end is its own file entry; both carry the pipe's inode as pipe_id,
/// and the data in flight is recorded once per pipe in pipes-data.img. Restore makes the pipe
/// in cryo, refills it, and sends each end the task had; an end the task had closed is closed,
/// so a reader still sees EOF after the data.
enum PipeFile: FdKind {
    static let name = "pipe"
    static let type = Img_FdTypes.pipe

    static func claims(_ f: OpenFd) -> Bool { f.target.hasPrefix("pipe:[") }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        var e = Img_PipeEntry()
        e.id = id
        e.pipeID = UInt32(truncatingIfNeeded: f.stat.st_ino)
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.fown = FdKinds.noOwner
        // A pipe shared with a process outside the dump (a shell's pipeline, a supervisor
        // reading our output) is the caller's to give back at restore (--inherit-fd), as CRIU
        // does; its bytes in flight stay in it for that process. The tree may hold one end
        // only: one inherited fd cannot stand for both.
        let outside = ctx.holders(ofPipe: UInt64(f.stat.st_ino)).subtracting(ctx.treePids)
        if !outside.isEmpty {
            let mine = f.info.flags & O_ACCMODE
            if let other = ctx.treeEnds(ofPipe: UInt64(f.stat.st_ino)).first(where: { $0 != mine }) {
                throw DumpError.fdState(pid: f.pid, fd: f.fd, target: f.target,
                                        reason: "the pipe is shared with pid \(outside.sorted().map(String.init).joined(separator: ", ")) outside the dumped tree, and the tree holds both its ends (\(mine == O_WRONLY ? "write" : "read") and \(other == O_WRONLY ? "write" : "read")): one --inherit-fd cannot stand for both")
            }
            e.external = true
            entry.pipe = e
            return
        }
        entry.pipe = e
        try PipeData.record(f, pipeID: e.pipeID, into: &ctx.pipeData, ctx: ctx)
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.pipe
        let what = "pipe id \(entry.id) (pipe \(e.pipeID))"
        if e.external {
            let key = InheritedFds.pipeKey(e.pipeID)
            guard let given = ctx.inherited.byKey[key] else {
                throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what,
                                        reason: "the pipe was shared with a process outside the tree; give the fd that stands for it: --inherit-fd fd[N]:\(key)")
            }
            // A description of the caller's: the tree's flags go on it, as the tree had them.
            let fd = fcntl(given, F_DUPFD_CLOEXEC, 0)
            guard fd >= 0 else { throw SystemCallError(call: "fcntl(F_DUPFD_CLOEXEC) of --inherit-fd fd \(given)", errno: errno, context: what) }
            ctx.keepers.append(fd)
            try FileFlags.set(fd, e.flags, what: what)
            return try ctx.install(fd, id: entry.id, what: what)
        }
        if ctx.pipes[e.pipeID] == nil {
            var p: [Int32] = [-1, -1]
            try p.withUnsafeMutableBufferPointer { _ = try Sys.call(.pipe2, Int(bitPattern: $0.baseAddress!), Int(O_CLOEXEC), context: what) }
            ctx.pipes[e.pipeID] = (p[0], p[1])
            try PipeData.refill(p[1], data: try ctx.pipeData(.pipesData, pipeID: e.pipeID), what: what)
        }
        let ends = ctx.pipes[e.pipeID]!
        var fd = Int32(bitPattern: e.flags) & O_ACCMODE == O_WRONLY ? ends.write : ends.read
        if ctx.objects.values.contains(fd) {
            // A second description of the same end (reopened through /proc): its own flags.
            fd = open("/proc/self/fd/\(fd)", Int32(bitPattern: e.flags) & O_ACCMODE | O_CLOEXEC | O_NONBLOCK)
            guard fd >= 0 else { throw SystemCallError(call: "open(/proc/self/fd)", errno: errno, context: what) }
            ctx.keepers.append(fd)
        }
        try FileFlags.set(fd, e.flags, what: what)
        return try ctx.install(fd, id: entry.id, what: what)
    }
}

/// Named pipes. The path and open flags live in a regular-file entry (regf_id), the data in
/// fifo-data.img. Restore opens the FIFO in cryo, first read-write and non-blocking so that
/// no open waits for a peer, refills it, then opens each description with its own flags.
enum FifoFile: FdKind {
    static let name = "FIFO"
    static let type = Img_FdTypes.fifo

    static func claims(_ f: OpenFd) -> Bool {
        f.target.hasPrefix("/") && f.stat.st_mode & S_IFMT == S_IFIFO && !f.target.hasSuffix(" (deleted)")
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        let regID = ctx.extraID()
        var reg = Img_FileEntry()
        reg.type = .reg
        reg.id = regID
        reg.reg = RegularFile.entryFor(path: f.target, id: regID, flags: UInt32(bitPattern: f.info.flags & ~O_CLOEXEC), pos: 0, size: nil, mode: f.stat.st_mode)
        ctx.extraEntries.append(reg)
        var e = Img_FifoEntry()
        e.id = id
        e.pipeID = UInt32(truncatingIfNeeded: f.stat.st_ino)
        e.regfID = regID
        entry.fifo = e
        try PipeData.record(f, pipeID: e.pipeID, into: &ctx.fifoData, ctx: ctx)
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.fifo
        guard let reg = ctx.files[e.regfID], reg.hasReg else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: name, reason: "its path entry \(e.regfID) is not in files.img")
        }
        let path = reg.reg.name
        let what = "FIFO \(path)"
        if ctx.fifos[e.pipeID] == nil {
            let keeper = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
            guard keeper >= 0 else { throw RestoreError.fileMissing(path: path, errno: errno) }
            ctx.fifos[e.pipeID] = keeper
            try PipeData.refill(keeper, data: try ctx.pipeData(.fifoData, pipeID: e.pipeID), what: what)
        }
        let flags = Int32(bitPattern: reg.reg.flags) & ~(O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC)
        let fd = open(path, flags | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw RestoreError.fileMissing(path: path, errno: errno) }
        do { try FileFlags.set(fd, UInt32(bitPattern: flags), what: what) } catch { close(fd); throw error }
        return try ctx.install(fd, id: entry.id, what: what)
    }
}
