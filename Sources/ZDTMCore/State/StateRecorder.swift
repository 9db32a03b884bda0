import Engine

public enum StateRecorder {
    /// rt_sigtimedwait, rt_sigsuspend, pselect6, ppoll, epoll_pwait, epoll_pwait2.
    static let maskSwapping: Set<Int> = [128, 130, 270, 271, 281, 441]

    /// Walks the tree from `root` through the children files. Processes other than the root
    /// that vanish mid-walk are skipped; the root vanishing is an error.
    public static func record(root: Int32, proc: ProcReader = ProcReader()) throws -> VisibleState {
        var out: [VisibleState.Process] = []
        var queue = [root]
        var seen: Set<Int32> = []
        while !queue.isEmpty {
            let pid = queue.removeFirst()
            guard seen.insert(pid).inserted else { continue }
            do {
                let st = try proc.stat(pid: pid)
                if st.isZombie {
                    // A zombie has nothing left to show but its place in the tree.
                    out.append(.init(pid: pid, ppid: st.ppid, pgid: st.pgrp, sid: st.session, comm: st.comm + " <zombie>",
                                     threads: [], maps: [], fds: [], cwd: "", sigIgn: 0, sigCgt: 0))
                    continue
                }
                let status = try proc.status(pid: pid)
                var threads: [VisibleState.Thread] = []
                for t in try proc.tasks(pid: pid) {
                    guard let ts = try? proc.taskStatus(pid: pid, tid: t) else { continue }
                    let call = proc.taskSyscall(pid: pid, tid: t)
                    threads.append(.init(tid: t, sigBlk: ts.sigBlk, maskIsTemporary: call.map { StateRecorder.maskSwapping.contains($0) } ?? false))
                }
                let maps = try proc.maps(pid: pid).map {
                    VisibleState.Map(start: $0.start, end: $0.end, perms: $0.permString, offset: $0.offset, path: $0.path)
                }
                var fds: [VisibleState.Fd] = []
                for fd in try proc.fds(pid: pid) {
                    // An fd closed between listing and reading is the workload's business, not ours.
                    guard let target = try? proc.fdTarget(pid: pid, fd: fd) else { continue }
                    let flags = (try? proc.fdinfo(pid: pid, fd: fd).flags).map { Int32(truncatingIfNeeded: $0) } ?? -1
                    fds.append(.init(fd: fd, target: target, flags: flags))
                }
                out.append(.init(pid: pid, ppid: st.ppid, pgid: st.pgrp, sid: st.session, comm: st.comm,
                                 threads: threads, maps: maps, fds: fds, cwd: try proc.cwd(pid: pid),
                                 sigIgn: status.sigIgn, sigCgt: status.sigCgt))
                queue.append(contentsOf: try proc.allChildren(pid: pid))
            } catch ProcError.gone(let g) where g == pid && pid != root {
                continue
            } catch where pid != root && ((try? proc.stat(pid: pid))?.isZombie ?? true) {
                // Died while read (its cwd and maps go first): as good as vanished.
                continue
            }
        }
        return VisibleState(root: root, processes: out.sorted { $0.pid < $1.pid })
    }
}
