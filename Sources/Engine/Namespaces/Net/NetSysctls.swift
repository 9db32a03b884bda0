import Glibc

/// The sysctls of a network namespace that cryo keeps, in CRIU's lists and order (its net.c):
/// per-device conf for IPv4 and IPv6 (also as "all" and "default"), unix, ipv4. Read and
/// written through /proc/sys/net by a thread inside the namespace.
enum NetSysctls {
    static let conf4 = ["accept_local", "accept_redirects", "accept_source_route", "arp_accept", "arp_announce", "arp_filter",
                        "arp_ignore", "arp_notify", "bootp_relay", "disable_policy", "disable_xfrm", "force_igmp_version",
                        "forwarding", "igmpv2_unsolicited_report_interval", "igmpv3_unsolicited_report_interval", "log_martians",
                        "medium_id", "promote_secondaries", "proxy_arp", "proxy_arp_pvlan", "route_localnet", "rp_filter",
                        "secure_redirects", "send_redirects", "shared_media", "src_valid_mark", "tag", "ignore_routes_with_linkdown",
                        "drop_gratuitous_arp", "drop_unicast_in_l2_multicast"]
    static let conf6 = ["accept_dad", "accept_ra", "accept_ra_defrtr", "accept_ra_from_local", "accept_ra_min_hop_limit", "accept_ra_mtu",
                        "accept_ra_pinfo", "accept_ra_rt_info_max_plen", "accept_ra_rtr_pref", "accept_redirects", "accept_source_route",
                        "autoconf", "dad_transmits", "disable_ipv6", "drop_unicast_in_l2_multicast", "drop_unsolicited_na",
                        "force_mld_version", "force_tllao", "forwarding", "hop_limit", "ignore_routes_with_linkdown", "keep_addr_on_down",
                        "max_addresses", "max_desync_factor", "mldv1_unsolicited_report_interval", "mldv2_unsolicited_report_interval",
                        "mtu", "ndisc_notify", "optimistic_dad", "proxy_ndp", "regen_max_retry", "router_probe_interval",
                        "router_solicitation_delay", "router_solicitation_interval", "router_solicitations", "stable_secret",
                        "suppress_frag_ndisc", "temp_prefered_lft", "temp_valid_lft", "use_oif_addrs_only", "use_optimistic", "use_tempaddr"]
    static let unix = ["max_dgram_qlen"]
    static let ipv4 = ["ping_group_range"]
    /// Namespaced sysctls CRIU does not keep, kept in NetnsEntry's cryo field by path.
    static let extra = ["ipv4/ip_local_port_range", "ipv4/ip_local_reserved_ports", "ipv4/ip_unprivileged_port_start",
                        "ipv4/ip_default_ttl", "ipv4/ip_no_pmtu_disc", "ipv4/tcp_keepalive_time", "ipv4/tcp_keepalive_intvl",
                        "ipv4/tcp_keepalive_probes", "ipv4/tcp_fin_timeout", "ipv4/tcp_syncookies", "ipv4/tcp_timestamps",
                        "ipv4/tcp_sack", "ipv4/tcp_window_scaling", "ipv4/tcp_ecn", "ipv4/tcp_retries2", "ipv4/tcp_syn_retries",
                        "core/somaxconn"]

    static func path(_ rel: String) -> String { "/proc/sys/net/" + rel }

    /// The value with its trailing newline, nil when the kernel has no such file or will not
    /// show it (stable_secret unset: EIO).
    static func read(_ rel: String) -> String? {
        let fd = open(path(rel), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = Glibc.read(fd, &buf, buf.count)
        guard n >= 0 else { return nil }
        var s = String(decoding: buf[0..<n], as: UTF8.self)
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }

    static func write(_ rel: String, _ value: String) throws {
        let fd = open(path(rel), O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, context: path(rel)) }
        defer { close(fd) }
        let b = Array(value.utf8)
        guard b.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == b.count else {
            throw SystemCallError(call: "write(\(value))", errno: errno, context: path(rel))
        }
    }

    /// One CRIU list under `dir` ("ipv4/conf/all"): an int entry each (string for
    /// stable_secret and ping_group_range), without a value where the kernel has none.
    static func dump(_ names: [String], dir: String) -> [Img_SysctlEntry] {
        names.map { name in
            var e = Img_SysctlEntry()
            let v = read(dir + "/" + name)
            if name == "stable_secret" || name == "ping_group_range" {
                e.type = .ctlStr
                if let v { e.sarg = v }
            } else {
                e.type = .ctl32
                if let v, let i = Int32(v) { e.iarg = i }
            }
            return e
        }
    }

    static func value(_ e: Img_SysctlEntry) -> String? {
        e.type == .ctlStr ? (e.hasSarg ? e.sarg : nil) : (e.hasIarg ? String(e.iarg) : nil)
    }

    /// Writes the entries that differ from what the namespace has now, then reads every one
    /// back: a value that did not take is an error naming the sysctl. accept_redirects goes
    /// last, as in CRIU: writing forwarding resets it (inet_forward_change).
    static func restore(_ names: [String], dir: String, _ entries: [Img_SysctlEntry], skip: Set<String> = []) throws {
        guard entries.isEmpty || entries.count == names.count else {
            throw RestoreError.unsupported("net/\(dir): \(entries.count) sysctl entries, cryo knows \(names.count)")
        }
        let all = wanted(names, dir: dir, entries, skip: skip)
        for (rel, want) in all.filter({ !$0.rel.hasSuffix("/accept_redirects") }) + all.filter({ $0.rel.hasSuffix("/accept_redirects") }) {
            if holds(rel, want).ok { continue }
            try write(rel, want)
            let (ok, now) = holds(rel, want)
            guard ok else { throw RestoreError.unsupported("net/\(rel) = \(want) (the new namespace holds \(now ?? "nothing") after writing it)") }
        }
    }

    /// After every sysctl of the namespace is written: each still holds its image's value.
    /// Writes propagate (all/forwarding to default and every device, all/disable_ipv6 too,
    /// default to devices that never set their own), so a value checked right after its own
    /// write can still be changed by a later one; this catches any the order did not foresee.
    static func verify(_ names: [String], dir: String, _ entries: [Img_SysctlEntry], skip: Set<String> = []) throws {
        guard entries.count == names.count else { return }
        for (rel, want) in wanted(names, dir: dir, entries, skip: skip) {
            let (ok, now) = holds(rel, want)
            guard ok else { throw RestoreError.unsupported("net/\(rel) = \(want) was changed to \(now ?? "nothing") by a later sysctl of the restore") }
        }
    }

    /// The image's values by path ("ipv4/conf/all/forwarding"), in list order, without the
    /// skipped names and the ones the kernel had no value for.
    private static func wanted(_ names: [String], dir: String, _ entries: [Img_SysctlEntry], skip: Set<String>) -> [(rel: String, want: String)] {
        zip(names, entries).compactMap { name, e in skip.contains(name) ? nil : value(e).map { (dir + "/" + name, $0) } }
    }

    /// Whether `rel` reads `want` now, and what it reads (normalized).
    private static func holds(_ rel: String, _ want: String) -> (ok: Bool, now: String?) {
        let now = read(rel).map(normalized)
        return (now == normalized(want), now)
    }

    /// Values compared without the difference between tabs and spaces (ranges print a tab).
    static func normalized(_ s: String) -> String { s.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") }
}
