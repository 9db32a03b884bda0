import Foundation

/// The namespace kinds of /proc/PID/ns, with CRIU's clone flags (its ns masks use them).
public enum NamespaceKind: String, CaseIterable, Sendable, Hashable {
    case user, pid, mnt, net, uts, ipc, cgroup, time

    public var cloneFlag: UInt64 {
        switch self {
        case .user: return 0x1000_0000
        case .pid: return 0x2000_0000
        case .mnt: return 0x0002_0000
        case .net: return 0x4000_0000
        case .uts: return 0x0400_0000
        case .ipc: return 0x0800_0000
        case .cgroup: return 0x0200_0000
        case .time: return 0x0000_0080
        }
    }

    /// The name in /proc/PID/ns and in CRIU's --external KIND[INODE]:KEY.
    public var procName: String { rawValue }
}

public enum NamespaceError: Error, CustomStringConvertible, Equatable {
    /// A namespace of the tree's that cryo cannot dump or restore yet.
    case unsupported(pid: Int32, kind: String, inode: UInt64, reason: String)
    /// A namespace of the tree that a process outside it also uses, not named --external.
    case sharedOutside(pid: Int32, kind: String, inode: UInt64, outside: Int32)
    case badExternal(String)
    /// An --external of a kind cryo does not map.
    case unknownExternal(String)
    /// Restore: the images or the machine do not allow this namespace to be rebuilt.
    case restore(kind: String, reason: String)

    public var description: String {
        switch self {
        case .unsupported(let p, let k, let i, let r):
            return "pid \(p): \(k) namespace \(k):[\(i)]: \(r)"
        case .sharedOutside(let p, let k, let i, let o):
            return "pid \(p): \(k) namespace \(k):[\(i)] is shared with pid \(o), outside the tree; name it with --external \(k)[\(i)]:KEY to dump the tree without it"
        case .badExternal(let s):
            return "--external \(s): expected KIND[INODE]:KEY with KIND one of \(NamespaceKind.allCases.filter { $0 != .mnt }.map(\.rawValue).joined(separator: ", "))"
        case .unknownExternal(let s):
            return "--external \(s): cryo knows veth[IFNAME]:OUTSIDE[@BRIDGE] and KIND[INODE]:KEY for a namespace (KIND one of \(NamespaceKind.allCases.filter { $0 != .mnt }.map(\.rawValue).joined(separator: ", "))), mnt[MOUNTPOINT or KEY]:KEY or PATH for a mount, and unix[INODE] for a unix socket of the tree (as --ext-unix-sk=INODE); other kinds are not handled"
        case .restore(let k, let r):
            return "\(k) namespace: \(r)"
        }
    }
}

/// Namespaces named --external KIND[INODE]:KEY (CRIU's spelling): the tree may share them
/// with processes outside; their contents are not dumped.
public struct ExternalNamespaces: Sendable, Equatable {
    public var keys: [NamespaceKind: [UInt64: String]] = [:]
    public init() {}

    /// Whether `spec` names a namespace (KIND[...]): mnt[KEY] is a mount, not a namespace.
    static func claims(_ spec: String) -> Bool {
        guard let open = spec.firstIndex(of: "["), let kind = NamespaceKind(rawValue: String(spec[..<open])) else { return false }
        return kind != .mnt
    }

    /// Takes the namespace entries of `--external` values; others (veth[...], mnt[...]...) are
    /// left to their own owners (Externals refuses the ones nobody owns).
    public init(parsing values: [String]) throws {
        for v in values where Self.claims(v) {
            guard let open = v.firstIndex(of: "["), let close = v.firstIndex(of: "]"), open < close,
                  let kind = NamespaceKind(rawValue: String(v[..<open])) else { throw NamespaceError.badExternal(v) }
            let after = v[v.index(after: close)...]
            guard let inode = UInt64(v[v.index(after: open)..<close]), after.hasPrefix(":"), after.count > 1 else {
                throw NamespaceError.badExternal(v)
            }
            keys[kind, default: [:]][inode] = String(after.dropFirst())
        }
    }

    public func key(_ kind: NamespaceKind, _ inode: UInt64) -> String? { keys[kind]?[inode] }
}
