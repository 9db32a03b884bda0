import Glibc

extension Restorer {
    /// The fds restoreFiles leaves for last (pidfds, PidFd.deferredStage): every process and
    /// thread of the tree exists now. A pidfd of a pid the images do not restore is refused.
    func restoreDeferredFiles(_ plans: [Plan], built: Built, transport: FdTransport, shared: RestoredObjects) throws {
        let tids = Set(plans.flatMap { $0.pstree.threads.map { Int32(bitPattern: $0) } } + plans.map(\.pid) + [-1])
        // Pidfds of reaped processes: every description of one process (one inode) is opened
        // on the same helper before it is reaped.
        var dead: [UInt32: [Img_FileEntry]] = [:]
        for f in shared.files.values.sorted(by: { $0.id < $1.id }) where f.type == .pidfd && f.hasPidfd && f.pidfd.nspid == -1 {
            dead[f.pidfd.ino, default: []].append(f)
        }
        for (ino, entries) in dead {
            let fds = try PidFd.deadPidfds(count: entries.count, what: "pidfds of a reaped process (inode \(ino))")
            for (f, fd) in zip(entries, fds) {
                shared.objects[f.id] = fd
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                try FileFlags.set(fd, f.pidfd.flags, what: "pidfd id \(f.id) of a reaped process")
            }
        }
        // The images name pids inside the tree's pid namespace; cryo opens by the pid it sees.
        var host: [Int32: Int32] = [:]
        for ts in built.targets.values { for t in ts { host[t.vpid] = t.pid } }
        for p in plans where !p.isZombie && !sharesFiles(p) {
            for fi in p.fdinfo {
                guard let f = p.files[fi.id], f.type == .pidfd else { continue }
                guard f.hasPidfd, tids.contains(f.pidfd.nspid) else {
                    throw RestoreError.file(pid: p.pid, id: fi.id, what: "pidfd at fd \(fi.fd)",
                                            reason: "its pid \(f.pidfd.nspid) is not a task of the restored tree")
                }
                guard f.pidfd.nspid != -1, shared.objects[f.id] == nil else { continue }
                guard let h = host[f.pidfd.nspid] else {
                    throw RestoreError.file(pid: p.pid, id: fi.id, what: "pidfd at fd \(fi.fd)", reason: "pid \(f.pidfd.nspid) was not made")
                }
                shared.objects[f.id] = try PidFd.open(host: h, entry: f, what: "pidfd of pid \(f.pidfd.nspid) (\(h) seen from cryo)")
            }
            try restoreFiles(built.targets[p.pid]![0], plan: p, transport: transport, shared: shared, stages: PidFd.deferredStage...PidFd.deferredStage)
        }
    }
}
