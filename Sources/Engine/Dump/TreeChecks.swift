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

    /// Restore makes each process a child of its parent, which has its own session by then, and
    /// a process can only take its parent's session or make its own: one in a third session
    /// (it was reparented after its session leader forked it, as to a subreaper or init) would
    /// fail the restore after the dump ended the tree. Refused here, naming it, while the tree
    /// can still run on. A shell job's processes may be in the shell's session.
    static func sessions(_ pstree: [Img_PstreeEntry], shellJob: Bool) throws {
        if shellJob { return }
        let byPid = Dictionary(pstree.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        for e in pstree where e.ppid != 0 && e.sid != e.pid {
            guard let parent = byPid[e.ppid], parent.sid == e.sid else {
                let theirs = byPid[e.ppid].map { "session \($0.sid)" } ?? "no dumped session"
                throw DumpError.unsupported(pid: Int32(e.pid), what: "a process in session \(e.sid), which is neither its own nor its parent's (pid \(e.ppid), in \(theirs): it was reparented after its session's leader forked it),")
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
