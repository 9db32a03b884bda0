import Glibc

/// A process group outlives its leader while a member lives (CRIU's zombie01, `a | b` after
/// `a` exited). setpgid can only join a group that exists, so restore makes the group again
/// with a helper task that has the gone leader's pid, as CRIU's TASK_HELPER: forked from the
/// first member's parent (so it is in the member's session), it takes its own group, the
/// members join it, and once they have, it exits and that parent reaps it (a group that still
/// exists outside the tree is joined as before). Its exit signal is
/// 0: the parent gets no SIGCHLD it never had.
extension Restorer {
    struct GroupHelper {
        let pgid: Int32        // the gone leader's pid, as the tree sees it
        let host: Int32        // as cryo sees it
        let remote: Remote
        let parent: Int32      // image pid of the process that forked it
    }

    /// Before `child` is made: the group it must join exists, by a helper if its leader is gone.
    func makeGroupHelper(for child: Plan, parent: Plan, built: Built, plans: [Plan]) throws {
        let pgid = Int32(child.pstree.pgid)
        if plans.contains(where: { $0.pid == pgid }) || built.groupHelpers.contains(where: { $0.pgid == pgid }) { return }
        if request.shellJob { return }  // a shell job's group is its shell's
        // A group outside the tree that still exists here (the caller's own, when a tree is
        // restored from the process group it was dumped from) is joined as it is. Inside a new
        // pid namespace nothing but the tree exists yet.
        if built.host[plans[0].pid] == plans[0].pid && (kill(-pgid, 0) == 0 || errno == EPERM) { return }
        guard parent.pstree.sid == child.pstree.sid, let pt = built.targets[parent.pid]?.first else {
            throw RestoreError.unsupported("pid \(child.pid) in process group \(pgid), whose leader is gone, with its parent \(parent.pid) in another session")
        }
        let host = try clone(from: pt.remote, flags: 0, exitSignal: 0, pid: pgid)
        built.order.append(host)
        let remote = try Remote(tid: host, maps: try ProcReader().maps(pid: host))
        built.groupHelpers.append(GroupHelper(pgid: pgid, host: host, remote: remote, parent: parent.pid))
        try remote.syscall(.setpgid, 0, 0)
        log.debug("group helper \(pgid) (host pid \(host)) made by \(parent.pid)")
    }

    /// Once every member has joined: each helper exits and its parent reaps it, so the pid is
    /// free again and nothing of cryo's is left in the tree.
    func endGroupHelpers(_ built: Built) throws {
        for h in built.groupHelpers {
            try h.remote.terminate(exitCode: 0, signal: 0)
            guard let pt = built.targets[h.parent]?.first else { continue }
            let got = try pt.remote.syscall(.wait4, UInt64(UInt32(bitPattern: h.pgid)), 0, UInt64(WNOHANG | __WALL))
            guard Int32(truncatingIfNeeded: got) == h.pgid else {
                throw RestoreError.unsupported("group helper \(h.pgid) was not reaped by its parent \(h.parent) (wait4 gave \(Int64(bitPattern: got)))")
            }
            built.order.removeAll { $0 == h.host }
        }
        built.groupHelpers.removeAll()
    }
}
