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

    /// Inherited from the parent the task was forked from, so always written as dumped.
    func restoreCoredumpFilter(_ t: RestoreTarget, _ v: UInt32) throws {
        let proc = ProcReader()
        try proc.write("0x" + String(v, radix: 16), to: proc.path(pid: t.pid, "coredump_filter"))  // the kernel parses base 0
        let got = try proc.coredumpFilter(pid: t.pid)
        guard got == v else { throw RestoreError.unsupported("pid \(t.pid): coredump_filter came back as \(String(got, radix: 16)), not \(String(v, radix: 16))") }
    }

    /// PR_SET_MDWE cannot be undone and is inherited by children forked after it, so it is set
    /// once every child exists and the memory is built (Restorer.finishAll).
    func restoreMdwe(_ t: RestoreTarget, _ flags: UInt32) throws {
        try t.remote.syscall(.prctl, 65 /* PR_SET_MDWE */, UInt64(flags), 0, 0, 0)
        let got = try t.remote.syscall(.prctl, 66 /* PR_GET_MDWE */, 0, 0, 0, 0)
        guard got == UInt64(flags) else { throw RestoreError.unsupported("pid \(t.pid): memory-deny-write-execute came back as \(got), not \(flags)") }
    }

    /// After the thread's creds: commit_creds clears it on any change of ids (as into a
    /// user namespace's range).
    func restorePdeathSig(_ t: RestoreTarget, _ sig: UInt32) throws {
        try t.remote.syscall(.prctl, 1 /* PR_SET_PDEATHSIG */, UInt64(sig))
        let at = try t.put([UInt8](repeating: 0, count: 4))
        try t.remote.syscall(.prctl, 2 /* PR_GET_PDEATHSIG */, at)
        let got = try t.remote.readMemory(at: at, count: 4).u32(at: 0)
        guard got == sig else { throw RestoreError.unsupported("tid \(t.pid): parent-death signal came back as \(got), not \(sig)") }
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

extension Restorer {
    /// Written from cryo; raising is always allowed, lowering below the task's minimum is not
    /// (CAP_SYS_RESOURCE), which fails the restore, named.
    func restoreOomScoreAdj(_ t: RestoreTarget, _ v: Int32) throws {
        let proc = ProcReader()
        if try proc.oomScoreAdj(pid: t.pid) == v { return }
        try proc.write("\(v)", to: proc.path(pid: t.pid, "oom_score_adj"))
        let got = try proc.oomScoreAdj(pid: t.pid)
        guard got == v else { throw RestoreError.unsupported("pid \(t.pid): oom_score_adj came back as \(got), not \(v)") }
    }

    /// Only a task may set its own loginuid (and only with CAP_AUDIT_CONTROL, before its
    /// credentials are restored): written through injection into /proc/self/loginuid.
    func restoreLoginuid(_ t: RestoreTarget, _ v: UInt32) throws {
        let proc = ProcReader()
        // v is as the task sees it (its user namespace's view); /proc shows cryo's.
        let users = try UserIdMaps.of(pid: t.pid, proc: proc)
        func seen() throws -> UInt32 {
            let g = try proc.loginuid(pid: t.pid)
            return g == UInt32.max ? g : users.map { $0.uidInside(g) ?? UInt32.max - 1 } ?? g
        }
        if (try? seen()) == v { return }
        let r = t.remote
        let path = try t.put(string: "/proc/self/loginuid")
        let text = Array(String(Int64(Int32(bitPattern: v))).utf8)
        let buf = try t.put(text, offset: 256)
        let fd = try r.syscall(.open, path, UInt64(O_WRONLY | O_CLOEXEC))
        defer { _ = try? r.syscall(.close, fd) }
        do { try r.syscall(.write, fd, buf, UInt64(text.count)) } catch {
            throw RestoreError.unsupported("pid \(t.pid): loginuid \(Int32(bitPattern: v)): \(error)")
        }
        let got = try seen()
        guard got == v else { throw RestoreError.unsupported("pid \(t.pid): loginuid came back as \(got), not \(v)") }
    }
}
