import Glibc
/// What restore could not rebuild about the tree's shape, refused at dump while the tree can
/// still be resumed untouched.
enum TreeChecks {
    /// A zombie joins its session before it exits; restore can do that only when the session's
    /// leader is in the tree. A process group whose leader is gone is made again by a helper
    /// task with the leader's pid (Restore/GroupHelpers.swift), forked from the member's parent,
    /// so that parent must be in the tree, alive, and in the member's session. A shell job's
    /// session and group are the shell's.
    static func zombies(_ pstree: [Img_PstreeEntry], zombies: Set<Int32>, shellJob: Bool) throws {
        if shellJob { return }
        let byPid = Dictionary(pstree.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        for e in pstree where zombies.contains(Int32(e.pid)) && byPid[e.sid] == nil {
            throw DumpError.unsupported(pid: Int32(e.pid), what: "a zombie in session \(e.sid), whose leader is not in the dumped tree,")
        }
        for e in pstree where byPid[e.pgid] == nil && e.ppid != 0 {
            guard let parent = byPid[e.ppid], !zombies.contains(Int32(parent.pid)), parent.sid == e.sid else {
                throw DumpError.unsupported(pid: Int32(e.pid), what: "a process in group \(e.pgid), whose leader is gone, with a parent outside its session,")
            }
        }
    }

    /// SysV semaphore undo adjustments (semop with SEM_UNDO) cannot be read from outside, nor
    /// set again. A task that never used SEM_UNDO has no undo list, as cryo has none: kcmp
    /// (KCMP_SYSVSEM) compares the two lists' addresses, so a task whose list differs from
    /// cryo's empty one is refused rather than restored without its adjustments.
    static func semUndo(_ tree: FrozenTree) throws {
        for p in tree.processes where !p.isZombie {
            for tid in [p.pid] + p.threads where try Sys.kcmp(getpid(), tid, type: 6 /* KCMP_SYSVSEM */, 0, 0) != 0 {
                throw DumpError.unsupported(pid: tid, what: "SysV semaphore undo adjustments (a semop with SEM_UNDO), which cannot be read or set again,")
            }
        }
    }

    /// Every process frozen alive is alive still, so nothing was read from a dead one.
    static func stillAlive(_ tree: FrozenTree, proc: ProcReader) throws {
        for p in tree.processes where !p.isZombie {
            guard let st = try? proc.stat(pid: p.pid), !st.isZombie else { throw DumpError.processExited(pid: p.pid, during: "its images were being written") }
        }
    }
}
