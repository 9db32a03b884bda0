import Glibc

/// Why a /proc read or parse failed. `malformed` names the file and the 1-based line so a
/// kernel format change is found at once.
public enum ProcError: Error, CustomStringConvertible, Equatable, Sendable {
    case io(path: String, errno: Int32)
    case malformed(path: String, line: Int, reason: String)
    /// The process (or thread, for task files) vanished: ENOENT/ESRCH and its /proc directory is gone.
    case gone(pid: Int32)

    public var description: String {
        switch self {
        case .io(let p, let e): return "\(p): \(String(cString: strerror(e))) (errno \(e))"
        case .malformed(let p, let l, let r): return "\(p):\(l): \(r)"
        case .gone(let pid): return "process \(pid) is gone"
        }
    }
}
