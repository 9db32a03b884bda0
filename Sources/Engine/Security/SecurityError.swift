/// Seccomp, credential and cgroup state that cannot be carried, named by the task or the
/// cgroup it belongs to (docs/SECURITY-STATE.md).
public enum SecurityError: Error, CustomStringConvertible {
    /// Dump side: the thread's seccomp state cannot be dumped so that it comes back exactly.
    case seccomp(pid: Int32, tid: Int32, reason: String)
    /// Restore side: a thread's security state did not come back as the images say.
    case restore(tid: Int32, reason: String)
    case cgroup(pid: Int32?, what: String, reason: String)

    public var description: String {
        switch self {
        case .seccomp(let p, let t, let r): return p == t ? "pid \(p): seccomp: \(r)" : "pid \(p) tid \(t): seccomp: \(r)"
        case .restore(let t, let r): return "tid \(t): \(r)"
        case .cgroup(let p, let w, let r): return (p.map { "pid \($0): " } ?? "") + "cgroup \(w): \(r)"
        }
    }
}
