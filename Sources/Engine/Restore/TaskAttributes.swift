import Glibc

/// Process and thread attributes set by injection and checked by reading them back, so that
/// one the kernel does not take fails the restore instead of going unnoticed.
extension Restorer {
    /// Each MEMBARRIER_CMD_REGISTER_* bit of the mask is the command that registers it.
    func restoreMembarrier(_ t: RestoreTarget, mask: UInt32) throws {
        for bit in 0..<32 where mask & (UInt32(1) << UInt32(bit)) != 0 {
            try t.remote.syscall(.membarrier, UInt64(1) << UInt64(bit), 0, 0)
        }
        let got = UInt32(truncatingIfNeeded: try t.remote.syscall(.membarrier, 1 << 9, 0, 0))
        guard got == mask else {
            throw RestoreError.unsupported("pid \(t.pid): membarrier registrations came back as 0x\(String(got, radix: 16)), not 0x\(String(mask, radix: 16))")
        }
    }

    func restoreTimerSlack(_ t: RestoreTarget, _ ns: UInt64) throws {
        try t.remote.syscall(.prctl, Scheduling.prSetTimerslack, ns)
        let got = try t.remote.syscall(.prctl, Scheduling.prGetTimerslack)
        guard got == ns else { throw RestoreError.unsupported("tid \(t.pid): timer slack came back as \(got) ns, not \(ns)") }
    }
}

extension Restorer {
    /// A zombie keeps the session and process group it died in: it joins them before it
    /// exits, which only works once their leaders exist (a group led by a task made later
    /// fails the restore, named, rather than leaving the zombie in its parent's group).
    func placeZombie(_ p: Plan, remote: Remote, plans: [Plan]) throws {
        let pid = UInt64(p.pstree.pid), sid = p.pstree.sid, pgid = p.pstree.pgid
        let shellOutside = { (leader: UInt32) in self.request.shellJob && !plans.contains(where: { $0.pstree.pid == leader }) }
        if sid == p.pstree.pid {
            try remote.syscall(.setsid)
        } else if !shellOutside(sid), UInt32(truncatingIfNeeded: try remote.syscall(.getsid, 0)) != sid {
            throw RestoreError.unsupported("zombie \(p.pid) in session \(sid), which is neither its own nor its parent's")
        }
        if shellOutside(pgid) { return }
        if UInt32(truncatingIfNeeded: try remote.syscall(.getpgid, 0)) != pgid {
            do { try remote.syscall(.setpgid, 0, pgid == p.pstree.pid ? pid : UInt64(pgid)) } catch {
                throw RestoreError.unsupported("zombie \(p.pid) joining process group \(pgid) before it exits: \(error)")
            }
        }
    }
}
