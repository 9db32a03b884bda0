import Glibc
/// What restore could not rebuild about the tree's shape, refused at dump while the tree can
/// still be resumed untouched.
enum TreeChecks {
    /// Namespaces cryo does not restore yet (the network one is, docs/NETNS.md): a task in its
    /// own pid, uts, ipc, cgroup, time or user namespace would come back in cryo's, with other
    /// pids, hostname or IPC objects. Refused, naming the pid and the namespace. Mount
    /// namespaces are not compared yet: `ip netns exec` gives every command its own copy.
    static let unrestoredNamespaces = ["pid", "pid_for_children", "uts", "ipc", "cgroup", "time", "time_for_children", "user"]

    static func namespaces(of pids: [Int32], proc: ProcReader) throws {
        let me = getpid()
        for kind in unrestoredNamespaces {
            guard let mine = proc.namespaceInode(pid: me, kind) else { continue }
            for p in pids {
                guard let theirs = proc.namespaceInode(pid: p, kind), theirs != mine else { continue }
                throw DumpError.unsupported(pid: p, what: "its own \(kind) namespace (\(kind):[\(theirs)], not cryo's \(kind):[\(mine)])")
            }
        }
    }

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
}
