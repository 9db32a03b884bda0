extension Restorer {
    /// The fds restoreFiles leaves for last (pidfds, PidFd.deferredStage): every process and
    /// thread of the tree exists now. A pidfd of a pid the images do not restore is refused.
    func restoreDeferredFiles(_ plans: [Plan], built: Built, transport: FdTransport, shared: RestoredObjects) throws {
        let tids = Set(plans.flatMap { $0.pstree.threads.map { Int32(bitPattern: $0) } } + plans.map(\.pid))
        for p in plans where !p.isZombie && !sharesFiles(p) {
            for fi in p.fdinfo {
                guard let f = p.files[fi.id], f.type == .pidfd else { continue }
                guard f.hasPidfd, tids.contains(f.pidfd.nspid) else {
                    throw RestoreError.file(pid: p.pid, id: fi.id, what: "pidfd at fd \(fi.fd)",
                                            reason: "its pid \(f.pidfd.nspid) is not a task of the restored tree")
                }
            }
            try restoreFiles(built.targets[p.pid]![0], plan: p, transport: transport, shared: shared, stages: PidFd.deferredStage...PidFd.deferredStage)
        }
    }
}
