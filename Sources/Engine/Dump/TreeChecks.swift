import Glibc
/// What restore could not rebuild about the tree's shape, refused at dump while the tree can
/// still be resumed untouched.
enum TreeChecks {
    /// A zombie joins its session and process group before it exits; restore can do that only
    /// when their leaders are in the tree (a group whose leader is gone would need a helper
    /// task with the leader's pid, which cryo does not make). A shell job's are the shell's.
    static func zombies(_ pstree: [Img_PstreeEntry], zombies: Set<Int32>, shellJob: Bool) throws {
        let pids = Set(pstree.map(\.pid))
        for e in pstree where zombies.contains(Int32(e.pid)) {
            for (what, leader) in [("process group", e.pgid), ("session", e.sid)] where !pids.contains(leader) && !shellJob {
                throw DumpError.unsupported(pid: Int32(e.pid), what: "a zombie in \(what) \(leader), whose leader is not in the dumped tree,")
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
