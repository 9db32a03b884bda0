import Foundation

/// Pids as the images hold them: inside the tree's pid namespace (CRIU's vpids). cryo traces
/// and reads /proc with the pids of its own namespace; images, pstree and ids carry these.
/// On the host the two are the same.
public struct PidMap: Sendable {
    var toImage: [Int32: Int32] = [:]
    /// Whether the tree has a pid namespace of its own: a pid outside it is 0 inside.
    var nested = false

    public init() {}

    /// The innermost pid of every process and thread (the last NSpid of /proc status).
    public static func read(processes: [(pid: Int32, threads: [Int32])], inNewNamespace: Bool, proc: ProcReader) throws -> PidMap {
        var m = PidMap()
        m.nested = inNewNamespace
        guard inNewNamespace else { return m }
        for p in processes {
            for t in Set(p.threads + [p.pid]) {
                // A zombie keeps its status: NSpid is still there.
                let st = t == p.pid ? try proc.status(pid: p.pid) : try proc.taskStatus(pid: p.pid, tid: t)
                guard let inner = st.nsPid.last else {
                    throw NamespaceError.unsupported(pid: t, kind: "pid", inode: 0, reason: "no NSpid in its status")
                }
                m.toImage[t] = inner
                // A group or session whose leader is gone is still named inside (its helper
                // task at restore takes that pid); a leader in the tree maps the same.
                for ids in [st.nsPgid, st.nsSid] where t == p.pid && ids.count > 1 && m.toImage[ids[0]] == nil {
                    m.toImage[ids[0]] = ids[ids.count - 1]
                }
            }
        }
        return m
    }

    /// The pid the images use for `host`; one outside the tree's pid namespace is 0 there.
    public func image(_ host: Int32) -> Int32 {
        if let v = toImage[host] { return v }
        return nested ? 0 : host
    }

    public func image(_ host: UInt32) -> UInt32 { UInt32(bitPattern: image(Int32(bitPattern: host))) }

    /// A pstree entry with image pids.
    public func image(_ e: Img_PstreeEntry) -> Img_PstreeEntry {
        var o = e
        o.pid = image(e.pid); o.ppid = e.ppid == 0 ? 0 : image(e.ppid)
        o.pgid = image(e.pgid); o.sid = image(e.sid)
        o.threads = e.threads.map { image($0) }
        return o
    }

    /// Kobj ids name their first holder by pid.
    public func image(_ e: Img_TaskKobjIdsEntry) -> Img_TaskKobjIdsEntry {
        var o = e
        o.vmID = image(e.vmID); o.filesID = image(e.filesID); o.fsID = image(e.fsID); o.sighandID = image(e.sighandID)
        return o
    }
}
