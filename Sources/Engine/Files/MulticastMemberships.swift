import Glibc

/// Multicast groups a datagram socket joined. No socket option lists them, so each group
/// joined anywhere in the task's network namespace (/proc/PID/net/igmp, igmp6) is asked of
/// the socket with MCAST_MSFILTER, which answers EADDRNOTAVAIL for a group it is not in.
/// cryo does not restore memberships: a socket holding one is refused, naming the group.
enum MulticastMemberships {
    static let mcastMsfilter: Int32 = 48

    /// "224.1.2.3 on interface 4" for each group `s` is a member of.
    static func joined(_ s: Int32, pid: Int32, family: Int32, proc: ProcReader) throws -> [String] {
        var out: [String] = []
        // An IPv6 socket may also hold IPv4 groups (through IPPROTO_IP options).
        let kinds: [(v6: Bool, level: Int32)] = family == AF_INET6
            ? [(true, Int32(IPPROTO_IPV6)), (false, Int32(IPPROTO_IP))] : [(false, Int32(IPPROTO_IP))]
        for k in kinds {
            for g in try proc.multicastGroups(pid: pid, ipv6: k.v6) where isMember(s, level: k.level, group: g) {
                out.append("\(NetFormat.ip(g.group.count == 4 ? AF_INET : AF_INET6, g.group)) on interface \(g.ifindex)")
            }
        }
        return out
    }

    /// struct group_filter: u32 gf_interface, (pad), sockaddr_storage gf_group, u32 gf_fmode,
    /// u32 gf_numsrc, sockaddr_storage gf_slist[1].
    static func isMember(_ s: Int32, level: Int32, group g: MulticastGroup) -> Bool {
        var buf = [UInt8](repeating: 0, count: 8 + 128 + 8 + 128)
        withUnsafeBytes(of: UInt32(bitPattern: g.ifindex)) { buf.replaceSubrange(0..<4, with: $0) }
        if g.group.count == 4 {
            withUnsafeBytes(of: UInt16(AF_INET)) { buf.replaceSubrange(8..<10, with: $0) }
            buf.replaceSubrange(12..<16, with: g.group)
        } else {
            withUnsafeBytes(of: UInt16(AF_INET6)) { buf.replaceSubrange(8..<10, with: $0) }
            buf.replaceSubrange(16..<32, with: g.group)
        }
        var len = socklen_t(buf.count)
        return buf.withUnsafeMutableBytes { getsockopt(s, level, mcastMsfilter, $0.baseAddress, &len) } == 0
    }
}
