import Foundation
import Glibc
import Logging

/// CRIU's --network-lock: how a tree's own network namespace is kept quiet while the tree is
/// frozen or being rebuilt, so a peer's segment meets no socket-less kernel that would answer
/// with a reset. The lock is a firewall table inside that namespace only, dropping everything.
public enum NetworkLockMethod: String, Sendable, CaseIterable {
    case nftables, iptables, skip
}

public struct NetworkLock {
    static let log = Logger(label: "netns")
    let method: NetworkLockMethod
    let nsFD: Int32
    let table: String

    /// Locks the namespace of `nsFD` (the caller keeps the fd open until unlock).
    public static func lock(nsFD: Int32, method: NetworkLockMethod, name: String) throws -> NetworkLock {
        let l = NetworkLock(method: method, nsFD: nsFD, table: name)
        switch method {
        case .skip: return l
        case .nftables:
            // CRIU's rules: drop both ways but packets carrying its mark (cryo sends none).
            try l.nft("""
                add table inet \(name)
                add chain inet \(name) output { type filter hook output priority 0; policy drop; }
                add rule inet \(name) output meta mark 0xC114 accept
                add chain inet \(name) input { type filter hook input priority 0; policy drop; }
                add rule inet \(name) input meta mark 0xC114 accept

                """)
        case .iptables:
            for tool in ["iptables-restore", "ip6tables-restore"] {
                try l.ipt(tool, """
                    *filter
                    :\(name) - [0:0]
                    -I INPUT -j \(name)
                    -I OUTPUT -j \(name)
                    -A \(name) -m mark --mark 0xC114 -j ACCEPT
                    -A \(name) -j DROP
                    COMMIT

                    """)
            }
        }
        log.info("network namespace net:[\(NetNs.inode(nsFD))] locked (\(method.rawValue))")
        return l
    }

    public func unlock() throws {
        switch method {
        case .skip: return
        case .nftables: try nft("delete table inet \(table)\n")
        case .iptables:
            for tool in ["iptables-restore", "ip6tables-restore"] {
                try ipt(tool, """
                    *filter
                    -D INPUT -j \(table)
                    -D OUTPUT -j \(table)
                    -X \(table)
                    COMMIT

                    """)
            }
        }
        Self.log.info("network namespace net:[\(NetNs.inode(nsFD))] unlocked")
    }

    func nft(_ script: String) throws {
        guard let path = NetNs.tool("nft") else { throw NetNamespaceError.lock("nft (package nftables) is not installed; use --network-lock skip or iptables") }
        let r = try NetNs.run(path, ["-f", "-"], input: script, in: nsFD)
        guard r.status == 0 else { throw NetNamespaceError.lock("nft -f: \(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) (status \(r.status))") }
    }

    func ipt(_ tool: String, _ script: String) throws {
        guard let path = NetNs.tool(tool) else { throw NetNamespaceError.lock("\(tool) (package iptables) is not installed; use --network-lock skip or nftables") }
        let r = try NetNs.run(path, ["-w", "--noflush"], input: script, in: nsFD)
        guard r.status == 0 else { throw NetNamespaceError.lock("\(tool): \(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) (status \(r.status))") }
    }

    /// nftables tables other than a lock of cryo's: the namespace's own firewall, which cryo
    /// does not dump yet. Empty when nft is not installed (nothing can be seen then).
    static func foreignTables(nsFD: Int32, ours: String?) throws -> [String] {
        guard let path = NetNs.tool("nft") else { return [] }
        let r = try NetNs.run(path, ["list", "tables"], in: nsFD)
        guard r.status == 0 else { return [] }
        return r.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && (ours == nil || !$0.hasSuffix(" " + ours!)) }
    }
}
