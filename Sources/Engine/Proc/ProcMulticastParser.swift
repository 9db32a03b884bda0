import Glibc

/// A multicast group joined on an interface of a network namespace.
public struct MulticastGroup: Equatable, Sendable {
    public var ifindex: Int32
    /// The group address in network byte order (4 bytes, or 16 for IPv6).
    public var group: [UInt8]
}

/// /proc/PID/net/igmp and igmp6: the groups joined in the task's network namespace, by
/// anyone. Which socket holds which is asked of each socket (MCAST_MSFILTER).
public enum ProcMulticastParser {
    /// igmp: an "Idx Device : Count Querier" line per interface, then one line per group,
    /// indented, whose first field is the address as the kernel's u32 in host order (hex).
    public static func parseIgmp(_ text: String, source: String) throws -> [MulticastGroup] {
        var out: [MulticastGroup] = []
        var ifindex: Int32?
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() where n > 0 {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let first = f.first else { continue }
            if !line.hasPrefix("\t") && !line.hasPrefix(" ") {
                guard let i = Int32(first) else { throw ProcError.malformed(path: source, line: n + 1, reason: "no interface index") }
                ifindex = i
                continue
            }
            guard let i = ifindex, first.count == 8, let v = UInt32(first, radix: 16) else {
                throw ProcError.malformed(path: source, line: n + 1, reason: "bad group line")
            }
            // Printed from the in-memory (network order) address read as a little-endian u32.
            out.append(MulticastGroup(ifindex: i, group: [UInt8(v & 0xff), UInt8(v >> 8 & 0xff), UInt8(v >> 16 & 0xff), UInt8(v >> 24)]))
        }
        return out
    }

    /// igmp6: "IDX DEV GROUP-HEX USERS FLAGS TIMER" per line.
    public static func parseIgmp6(_ text: String, source: String) throws -> [MulticastGroup] {
        var out: [MulticastGroup] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 3, let i = Int32(f[0]), f[2].count == 32 else {
                throw ProcError.malformed(path: source, line: n + 1, reason: "bad igmp6 line")
            }
            let hex = Array(f[2].utf8)
            var g: [UInt8] = []
            for k in stride(from: 0, to: 32, by: 2) {
                guard let b = UInt8(String(decoding: hex[k..<k + 2], as: UTF8.self), radix: 16) else {
                    throw ProcError.malformed(path: source, line: n + 1, reason: "bad group address")
                }
                g.append(b)
            }
            out.append(MulticastGroup(ifindex: i, group: g))
        }
        return out
    }
}

extension ProcReader {
    /// Groups joined in the network namespace of `pid`, IPv4 or IPv6. A kernel without
    /// multicast support has no such file: no groups.
    public func multicastGroups(pid: Int32, ipv6: Bool) throws -> [MulticastGroup] {
        let p = path(pid: pid, ipv6 ? "net/igmp6" : "net/igmp")
        guard access(p, F_OK) == 0 else { return [] }
        let text = try readText(p, pid: pid)
        return ipv6 ? try ProcMulticastParser.parseIgmp6(text, source: p) : try ProcMulticastParser.parseIgmp(text, source: p)
    }
}
