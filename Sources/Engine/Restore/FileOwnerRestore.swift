import Glibc

extension Restorer {
    /// F_SETOWN owners and F_SETSIG signals, once every task exists (an owner may be a task
    /// made after the one holding the fd). Set on cryo's object of each description, or on a
    /// copy taken from a task holding it.
    func restoreFileOwners(_ plans: [Plan], built: Built, shared: RestoredObjects) throws {
        var host: [Int32: Int32] = built.host
        for ts in built.targets.values { for t in ts { host[t.vpid] = t.pid } }
        for f in shared.files.values.sorted(by: { $0.id < $1.id }) {
            guard let o = FileOwner.stored(in: f) else { continue }
            let what = "file id \(f.id) (\(f.type))"
            var fd = shared.objects[f.id] ?? -1
            var taken: Int32 = -1
            if fd < 0 {
                guard let p = plans.first(where: { !$0.isZombie && $0.fdinfo.contains { $0.id == f.id } }),
                      let fi = p.fdinfo.first(where: { $0.id == f.id }), let h = built.host[p.pid] else {
                    throw RestoreError.unsupported("\(what): has an F_SETOWN owner or F_SETSIG signal, but no restored task holds it")
                }
                let pidfd = try Sys.pidfdOpen(h)
                defer { close(pidfd) }
                taken = try Sys.pidfdGetfd(pidfd: pidfd, fd: Int32(fi.fd), context: "pid \(h) fd \(fi.fd)")
                fd = taken
            }
            defer { if taken >= 0 { close(taken) } }
            try FileOwner.restore(o, fd: fd, what: what) { host[$0] }
        }
    }
}
