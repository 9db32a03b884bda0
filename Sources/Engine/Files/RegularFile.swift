import Glibc

/// Regular files, directories and character devices opened by path (/dev/null, ttys by path).
/// Restore reopens the path with the same flags and moves to the same offset; a regular file
/// whose size changed since the dump is refused.
enum RegularFile: FdKind {
    static let name = "regular file"
    static let type = Img_FdTypes.reg

    static func claims(_ f: OpenFd) -> Bool {
        guard f.target.hasPrefix("/") else { return false }
        switch f.stat.st_mode & S_IFMT {
        case S_IFREG, S_IFDIR: return !f.target.hasSuffix(" (deleted)")
        // Pty ends are Tty's.
        case S_IFCHR: return !f.target.hasSuffix(" (deleted)") && !Tty.claims(f)
        default: return false
        }
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        entry.reg = entryFor(path: f.target, id: id, flags: UInt32(bitPattern: f.info.flags), pos: UInt64(max(0, f.info.pos)),
                             size: f.stat.st_mode & S_IFMT == S_IFREG ? UInt64(f.stat.st_size) : nil, mode: f.stat.st_mode)
    }

    static func entryFor(path: String, id: UInt32, flags: UInt32, pos: UInt64, size: UInt64?, mode: UInt32) -> Img_RegFileEntry {
        var r = Img_RegFileEntry()
        r.id = id
        r.flags = flags
        r.pos = pos
        var fown = Img_FownEntry()
        fown.uid = 0; fown.euid = 0; fown.signum = 0; fown.pidType = 0; fown.pid = 0
        r.fown = fown
        r.name = path
        if let size { r.size = size }
        r.mode = mode
        return r
    }

    /// "/proc/PID/REST" -> (PID, "/REST"): a file of one task's /proc.
    static func procPid(_ path: String) -> (Int32, String)? {
        guard path.hasPrefix("/proc/") else { return nil }
        let tail = path.dropFirst(6)
        let digits = tail.prefix(while: \.isNumber)
        guard !digits.isEmpty, let pid = Int32(digits) else { return nil }
        let rest = tail.dropFirst(digits.count)
        guard rest.isEmpty || rest.hasPrefix("/") else { return nil }
        return (pid, String(rest))
    }

    /// Files of a task's /proc wait until every task exists (a parent's fd of its child's).
    static func restoreStage(_ entry: Img_FileEntry, files: [UInt32: Img_FileEntry]) -> Int {
        entry.hasReg && procPid(entry.reg.name) != nil ? PidFd.deferredStage : 0
    }

    /// A terminal (pty slave or tty device), which a shell job gets back as the caller's.
    static func isTerminal(_ r: Img_RegFileEntry) -> Bool {
        r.mode & S_IFMT == S_IFCHR && (r.name.hasPrefix("/dev/pts/") || r.name.hasPrefix("/dev/tty") || r.name.hasPrefix("/dev/console"))
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let task = ctx.task
        var r = entry.reg
        let terminal = ctx.shared.terminal != nil && isTerminal(r)
        if let t = ctx.shared.terminal, terminal { r.name = t }
        let tmpfile = r.deleted && ctx.shared.ghosts?.tmpfileGhosts[r.name] != nil
        // A file of a task's /proc (/proc/PID/stat...) is opened through the task's own root,
        // so it is of the tree's /proc (its pid namespace's), as it was; in a container
        // every other file through the tree's root.
        if procPid(r.name) != nil { r.name = "/proc/\(task.pid)/root" + r.name }
        else if !terminal && !tmpfile { r.name = ctx.shared.root + r.name }
        if r.hasSize && !tmpfile {
            var st = stat()
            guard stat(r.name, &st) == 0 else { throw RestoreError.fileMissing(path: r.name, errno: errno) }
            guard UInt64(st.st_size) == r.size else {
                throw RestoreError.fileChanged(path: r.name, expectedSize: r.size, actualSize: UInt64(st.st_size))
            }
        }
        // O_CREAT/O_TRUNC/O_EXCL were for the original open, never for a restore.
        var flags = Int32(bitPattern: r.flags) & ~(O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC)
        var fd: Int32
        if tmpfile, let ghosts = ctx.shared.ghosts {
            if ghosts.tmpfiles[r.name] == nil {
                // An O_TMPFILE file, made now in the task's own root: its first description
                // keeps O_TMPFILE in its flags (and lets linkat(AT_EMPTY_PATH) name it later).
                let made = try ghosts.makeTmpfile(r.name, root: "/proc/\(task.pid)/root", flags: flags)
                fd = fcntl(made, F_DUPFD_CLOEXEC, 0)
                guard fd >= 0 else { throw SystemCallError(call: "fcntl(F_DUPFD_CLOEXEC)", errno: errno, context: r.name) }
                try FileFlags.set(fd, UInt32(bitPattern: flags), what: r.name)
                guard lseek(fd, off_t(r.pos), SEEK_SET) >= 0 else { throw SystemCallError(call: "lseek(\(r.pos))", errno: errno, context: r.name) }
                return try ctx.install(fd, id: entry.id, what: r.name)
            }
            // A further description of it is a reopen, which O_TMPFILE is not part of.
            r.name = "/proc/self/fd/\(ghosts.tmpfiles[r.name]!)"
            flags &= ~(GhostFiles.tmpfileBit | O_DIRECTORY)
        }
        // Opened in cryo and handed over, so that every task holding this description (a file
        // opened before fork) gets the same one and their offsets move together.
        fd = open(r.name, flags | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else { throw RestoreError.fileMissing(path: r.name, errno: errno) }
        if r.pos != 0 && (r.mode & S_IFMT == S_IFREG || r.mode == 0) {
            guard lseek(fd, off_t(r.pos), SEEK_SET) >= 0 else {
                let e = errno
                close(fd)
                throw RestoreError.file(pid: task.pid, id: entry.id, what: r.name, reason: "cannot seek to \(r.pos): \(String(cString: strerror(e)))")
            }
        }
        return try ctx.install(fd, id: entry.id, what: r.name)
    }
}
