import Glibc

/// CRIU's `--inherit-fd fd[N]:KEY`: an object of the tree that was shared with a process
/// outside it (the pipe to `tee`, a supervisor's log pipe) is, at restore, the caller's fd N
/// instead of a new one. KEY names the object as the dump saw it: `pipe:[INODE]`. An external
/// object with no fd given fails the restore, naming the --inherit-fd it needs.
public struct InheritedFds: Sendable, Equatable {
    public private(set) var byKey: [String: Int32] = [:]

    public init() {}

    /// Parses every `fd[N]:KEY`; N must be open in this process (the caller passed it).
    public init(parsing specs: [String]) throws {
        for s in specs {
            guard s.hasPrefix("fd["), let close = s.firstIndex(of: "]"),
                  s.index(after: close) < s.endIndex, s[s.index(after: close)] == ":",
                  let n = Int32(s[s.index(s.startIndex, offsetBy: 3)..<close]), n >= 0 else {
                throw InheritFdError.malformed(s)
            }
            let key = String(s[s.index(close, offsetBy: 2)...])
            guard Self.pipeInode(key) != nil || Self.socketInode(key) != nil else { throw InheritFdError.unknownKey(spec: s, key: key) }
            guard fcntl(n, F_GETFD) >= 0 else { throw InheritFdError.notOpen(fd: n, key: key) }
            guard byKey[key] == nil else { throw InheritFdError.twice(key: key) }
            byKey[key] = n
        }
    }

    public var isEmpty: Bool { byKey.isEmpty }

    /// The inode of `pipe:[INODE]`.
    static func pipeInode(_ key: String) -> UInt64? {
        guard key.hasPrefix("pipe:["), key.hasSuffix("]") else { return nil }
        return UInt64(key.dropFirst(6).dropLast())
    }

    static func pipeKey(_ inode: UInt32) -> String { "pipe:[\(inode)]" }

    /// The inode of `socket:[INODE]` (a unix socket dumped with --ext-unix-sk=INODE).
    static func socketInode(_ key: String) -> UInt64? {
        guard key.hasPrefix("socket:["), key.hasSuffix("]") else { return nil }
        return UInt64(key.dropFirst(8).dropLast())
    }

    static func socketKey(_ inode: UInt32) -> String { "socket:[\(inode)]" }
}

public enum InheritFdError: Error, CustomStringConvertible {
    case malformed(String)
    case unknownKey(spec: String, key: String)
    case notOpen(fd: Int32, key: String)
    case twice(key: String)

    public var description: String {
        switch self {
        case .malformed(let s): return "--inherit-fd \(s): expected fd[N]:KEY, e.g. fd[3]:pipe:[12345]"
        case .unknownKey(let s, let k): return "--inherit-fd \(s): cryo plugs in pipes and unix sockets only (KEY pipe:[INODE] or socket:[INODE]), not \(k)"
        case .notOpen(let fd, let k): return "--inherit-fd fd[\(fd)]:\(k): fd \(fd) is not open in cryo"
        case .twice(let k): return "--inherit-fd: \(k) is given twice"
        }
    }
}
