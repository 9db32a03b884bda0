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
        case S_IFREG, S_IFDIR, S_IFCHR: return !f.target.hasSuffix(" (deleted)")
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

    /// A terminal (pty slave or tty device), which a shell job gets back as the caller's.
    static func isTerminal(_ r: Img_RegFileEntry) -> Bool {
        r.mode & S_IFMT == S_IFCHR && (r.name.hasPrefix("/dev/pts/") || r.name.hasPrefix("/dev/tty") || r.name.hasPrefix("/dev/console"))
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let task = ctx.task
        var r = entry.reg
        if let t = ctx.shared.terminal, isTerminal(r) { r.name = t } else { r.name = ctx.shared.root + r.name }
        if r.hasSize {
            var st = stat()
            guard stat(r.name, &st) == 0 else { throw RestoreError.fileMissing(path: r.name, errno: errno) }
            guard UInt64(st.st_size) == r.size else {
                throw RestoreError.fileChanged(path: r.name, expectedSize: r.size, actualSize: UInt64(st.st_size))
            }
        }
        // O_CREAT/O_TRUNC/O_EXCL were for the original open, never for a restore.
        let flags = Int32(bitPattern: r.flags) & ~(O_CREAT | O_TRUNC | O_EXCL | O_CLOEXEC)
        // Opened in cryo and handed over, so that every task holding this description (a file
        // opened before fork) gets the same one and their offsets move together.
        let fd = open(r.name, flags | O_CLOEXEC | O_NOCTTY)
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
