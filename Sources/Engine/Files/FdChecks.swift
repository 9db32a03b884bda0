import Glibc

/// What no fd kind carries yet, checked for every fd before its kind dumps it: terminals other than ptys,
/// and locks on files in flight. Each is refused, naming the fd, rather than restored without it.
enum FdChecks {
    static func major(_ dev: UInt64) -> UInt64 { ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff) }
    static func minor(_ dev: UInt64) -> UInt64 { (dev & 0xff) | ((dev >> 12) & ~0xff) }

    enum Terminal: Equatable { case ptyMaster, ptySlave, other }

    /// The terminal behind a character device: pty masters (/dev/ptmx and its twins under
    /// devpts), pty slaves (majors 136-143), and other ttys (major 4, /dev/tty, /dev/console).
    static func terminal(_ st: stat) -> Terminal? {
        guard st.st_mode & S_IFMT == S_IFCHR else { return nil }
        let maj = major(UInt64(st.st_rdev)), min = minor(UInt64(st.st_rdev))
        if maj == 5 && min == 2 { return .ptyMaster }
        if (136...143).contains(maj) { return .ptySlave }
        if maj == 4 || (maj == 5 && min <= 1) { return .other }
        return nil
    }

    static func check(_ f: OpenFd, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        // Reopened by path inside the restored tree: the same path elsewhere is another file.
        if let ids = ctx.mountIDs, f.target.hasPrefix("/"), !f.target.hasPrefix("/memfd:"), !ids.contains(f.info.mntId) {
            throw refuse("on mount \(f.info.mntId), which is not in the tree's own mount tree (restore would open whatever has that path inside)")
        }
        switch terminal(f.stat) {
        case .ptyMaster, .ptySlave:
            break  // Tty checks both ends itself.
        case .other where Tty.isCttyAlias(f.stat):
            break  // /dev/tty: Tty's too.
        case .other:
            // With --shell-job restore opens the caller's terminal in its place.
            if !ctx.shellJob { throw refuse("a terminal, which cryo restores only as a shell job's (dump and restore with --shell-job)") }
        case nil: break
        }
        // A task's locks are noted fd by fd (FileLockDumper); a file in flight has no task to
        // take its description's lock again.
        if f.pid == getpid(), let lock = f.info.locks.first {
            throw refuse("holds a file lock (\(lock.text)), which cryo does not restore on a file in flight")
        }
        // Named before the F_SETOWN owner and F_SETSIG signal its break notifies.
        if ctx.locks.enabled, let l = f.info.locks.first(where: { FileLockDumper.breaking($0) != nil }) {
            throw refuse("holds a file lock (\(l.text)), \(FileLockDumper.breaking(l)!)")
        }
    }
}
