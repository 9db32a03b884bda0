import Engine

public enum StateRecorder {
    /// rt_sigtimedwait, rt_sigsuspend, pselect6, ppoll, epoll_pwait, epoll_pwait2.
    static let maskSwapping: Set<Int> = [128, 130, 270, 271, 281, 441]
    /// Reads of one process retried when it exec'd meanwhile, before giving up on a stable view.
    static let execRetries = 3

    /// Walks the tree from `root` through the children files. Processes other than the root
    /// that vanish, exit or are replaced by a new process under the same pid while they are
    /// read are left out: a tree that changes by itself is not a changed state. The root
    /// vanishing is an error.
    public static func record(root: Int32, proc: ProcReader = ProcReader()) throws -> VisibleState {
        var out: [VisibleState.Process] = []
        var queue = [root]
        var seen: Set<Int32> = []
        while !queue.isEmpty {
            let pid = queue.removeFirst()
            guard seen.insert(pid).inserted else { continue }
            do {
                guard let (p, children) = try recordProcess(pid, isRoot: pid == root, proc: proc) else { continue }
                out.append(p)
                queue.append(contentsOf: children)
            } catch ProcError.gone(let g) where g == pid && pid != root {
                continue
            } catch where pid != root && proc.isExiting(pid: pid) {
                // Died while read (its cwd and maps go first): as good as vanished.
                continue
            }
        }
        return inner(VisibleState(root: root, processes: out.sorted { $0.pid < $1.pid }), proc: proc)
    }

    /// Pids as the tree sees them inside its pid namespace (NSpid), which a restore keeps while
    /// the pids zdtm sees change; one outside the namespace is 0 there. On the host, the same.
    static func inner(_ s: VisibleState, proc: ProcReader) -> VisibleState {
        var map: [Int32: Int32] = [:]
        var nested = false
        for p in s.processes {
            guard let ns = (try? proc.status(pid: p.pid))?.nsPid, let last = ns.last else { continue }
            map[p.pid] = last
            if p.pid == s.root { nested = ns.count > 1 }
        }
        guard nested else { return s }
        func t(_ v: Int32) -> Int32 { map[v] ?? 0 }
        var out = s
        out.root = t(s.root)
        out.processes = s.processes.map { p in
            var q = p
            q.hostPid = p.pid; q.hostSid = p.sid
            q.pid = t(p.pid); q.ppid = t(p.ppid); q.pgid = t(p.pgid); q.sid = t(p.sid)
            q.threads = p.threads.map { th in
                var u = th
                // The leader's is the process's, read above: its task status read alone once gave
                // nothing (lazy00 in uns, a tid of 0 before the dump), a race of the recorder's.
                u.tid = th.tid == p.pid ? t(p.pid) : (try? proc.taskStatus(pid: p.pid, tid: th.tid))?.nsPid.last ?? 0
                return u
            }.sorted { $0.tid < $1.tid }  // host tids may wrap around pid_max where inner ones do not
            return q
        }.sorted { $0.pid < $1.pid }
        return out
    }

    /// One process, read between two looks at its stat. The reads are kept only if, at the
    /// second look, it is the same process (start time), has not begun exiting (PF_EXITING is
    /// set before the kernel drops files, fs and mm, so an exit that began after the second
    /// look cannot have touched the reads), and has not exec'd (comm unchanged; else retried).
    /// nil: the process is not there to record (gone, exiting, or its pid was reused).
    static func recordProcess(_ pid: Int32, isRoot: Bool, proc: ProcReader) throws -> (VisibleState.Process, [Int32])? {
        for attempt in 0...execRetries {
            let st = try proc.stat(pid: pid)
            if st.isZombie {
                // A zombie has nothing left to show but its place in the tree.
                return (.init(pid: pid, ppid: st.ppid, pgid: st.pgrp, sid: st.session, comm: st.comm,
                              threads: [], maps: [], fds: [], cwd: "", sigIgn: 0, sigCgt: 0, isZombie: true), [])
            }
            if !isRoot && proc.isExiting(pid: pid) { return nil }
            let status = try proc.status(pid: pid)
            var threads: [VisibleState.Thread] = []
            for t in try proc.tasks(pid: pid) {
                // A thread that is exiting (or gone) is leaving, not part of the state.
                guard let tst = try? proc.taskStat(pid: pid, tid: t), !tst.isExiting, !tst.isZombie,
                      let ts = try? proc.taskStatus(pid: pid, tid: t) else { continue }
                let call = proc.taskSyscall(pid: pid, tid: t)
                threads.append(.init(tid: t, sigBlk: ts.sigBlk, maskIsTemporary: call.map { maskSwapping.contains($0) } ?? false))
            }
            let maps = try proc.maps(pid: pid).map {
                VisibleState.Map(start: $0.start, end: $0.end, perms: $0.permString, offset: $0.offset, path: $0.path)
            }
            var fds: [VisibleState.Fd] = []
            for fd in try proc.fds(pid: pid) {
                // An fd closed between listing and reading is the workload's business, not ours.
                guard let target = try? proc.fdTarget(pid: pid, fd: fd),
                      let info = try? proc.fdinfo(pid: pid, fd: fd) else { continue }
                fds.append(.init(fd: fd, target: target, flags: Int32(truncatingIfNeeded: info.flags)))
            }
            let cwd = try proc.cwd(pid: pid)
            let children = try proc.allChildren(pid: pid)

            guard let again = try? proc.stat(pid: pid), again.starttime == st.starttime else {
                if isRoot { throw ProcError.gone(pid: pid) }
                return nil
            }
            if !isRoot && (again.isZombie || proc.isExiting(pid: pid)) { return nil }
            if again.comm != st.comm && attempt < execRetries { continue }
            return (.init(pid: pid, ppid: st.ppid, pgid: st.pgrp, sid: st.session, comm: again.comm,
                          threads: threads, maps: maps, fds: fds, cwd: cwd,
                          sigIgn: status.sigIgn, sigCgt: status.sigCgt), children)
        }
        return nil
    }
}
