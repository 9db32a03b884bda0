import CKernel
import Glibc

/// Raw sockets (SOCK_RAW, any protocol) and ICMP "ping" sockets (SOCK_DGRAM, IPPROTO_ICMP or
/// IPPROTO_ICMPV6), IPv4 and IPv6, in CRIU's INETSK entry with their type and protocol: bound
/// address (a ping socket's port is its echo ident), connected peer, shutdown, socket, IP and
/// raw options (ip_opts.raw). Their connected state is in the namespace's /proc/net table, not
/// in getpeername (a peer of port 0 reads as not connected). Queued packets cannot be sent
/// again from their sources: a dump with any is refused.
enum RawSocket: FdKind {
    static let name = "raw or ICMP socket"
    static let type = Img_FdTypes.inetsk

    static let solRaw: Int32 = 255, solIcmpv6: Int32 = 58
    static let icmpFilter: Int32 = 1, icmpv6Filter: Int32 = 1
    static let ipHdrincl: Int32 = 3, ipNodefrag: Int32 = 22, ipv6Checksum: Int32 = 7, ipv6Hdrincl: Int32 = 36

    static func claims(_ f: OpenFd) -> Bool {
        guard f.target.hasPrefix("socket:[") else { return false }
        return ["RAW", "RAWv6", "PING", "PINGv6"].contains(SockDiag.protocolName(pid: f.pid, fd: f.fd) ?? "")
    }

    /// Whether an INETSK entry is one of ours (restore reaches InetSocket first).
    static func owns(_ e: Img_InetSkEntry) -> Bool {
        e.type == UInt32(SOCK_RAW.rawValue) || (e.type == UInt32(SOCK_DGRAM.rawValue) && isIcmp(e.proto))
    }

    static func isIcmp(_ proto: UInt32) -> Bool { proto == UInt32(IPPROTO_ICMP) || proto == UInt32(IPPROTO_ICMPV6) }

    static func describe(family: UInt32, type: UInt32, proto: UInt32) -> String {
        let v = family == UInt32(AF_INET6) ? "v6" : "v4"
        return type == UInt32(SOCK_RAW.rawValue) ? "raw \(v) socket (protocol \(proto))" : "ICMP\(v) ping socket"
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let c = try ctx.copy(of: f)
        guard let fam = SocketOptions.int(c, SOL_SOCKET, SO_DOMAIN), let type = SocketOptions.int(c, SOL_SOCKET, SO_TYPE),
              let proto = SocketOptions.int(c, SOL_SOCKET, SO_PROTOCOL) else { throw refuse("SO_DOMAIN/SO_TYPE/SO_PROTOCOL: \(String(cString: strerror(errno)))") }
        let raw = type == Int32(SOCK_RAW.rawValue), v6 = fam == AF_INET6
        let table = (raw ? "raw" : "icmp") + (v6 ? "6" : "")
        let ino = UInt32(truncatingIfNeeded: f.stat.st_ino)
        // A ping socket that never bound or sent has no ident and is in no table.
        let line = try ctx.proc.netSockets(pid: f.pid, table: table).first { $0.inode == UInt64(f.stat.st_ino) }
        if line == nil && raw { throw refuse("not listed in /proc/\(f.pid)/net/\(table)") }
        var p = pollfd(fd: c, events: Int16(POLLIN) | Int16(0x2000) /* POLLRDHUP */, revents: 0)
        guard poll(&p, 1, 0) >= 0 else { throw refuse("poll: \(String(cString: strerror(errno)))") }
        if p.revents & Int16(POLLERR) != 0 { throw refuse("a pending socket error or error queue, which cryo does not restore") }
        if let l = line, l.rxQueue > 0 { throw refuse("\(l.rxQueue) bytes of packets in its receive queue, which cryo cannot send again from their sources") }

        var e = Img_InetSkEntry()
        e.id = id
        e.ino = ino
        e.family = UInt32(fam)
        e.type = UInt32(type)
        e.proto = UInt32(proto)
        e.state = UInt32(line?.state ?? 7 /* TCP_CLOSE */)
        e.srcPort = UInt32(line?.localPort ?? 0)
        e.dstPort = UInt32(line?.remotePort ?? 0)
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.backlog = 0
        e.srcAddr = line?.local ?? (v6 ? [0, 0, 0, 0] : [0])
        e.dstAddr = e.state == 1 ? (line?.remote ?? []) : []
        e.fown = FdKinds.noOwner
        if v6, e.srcAddr.count == 4, e.srcAddr[0] & 0xc0ff == 0x80fe {
            throw refuse("bound to an IPv6 link-local address, whose interface cryo does not keep yet")
        }
        e.opts = try SocketOptions.read(c, what: "pid \(f.pid) fd \(f.fd)", refuse: refuse)
        var ip = try InetOptions.read(c, family: fam, tcp: false, refuse: refuse).ip ?? Img_IpOptsEntry()
        if raw { ip.raw = try rawOptions(c, family: fam, proto: proto, refuse: refuse) }
        if v6 && raw {
            // A raw IPv6 socket has no IP level: its freebind is IPV6_FREEBIND, not kept yet.
            ip.clearFreebind()
            if let fb = SocketOptions.int(c, Int32(IPPROTO_IPV6), 78 /* IPV6_FREEBIND */), fb != 0 { throw refuse("socket option IPV6_FREEBIND is set, which cryo does not restore on raw sockets") }
        }
        e.ipOpts = ip
        if let g = try MulticastMemberships.joined(c, pid: f.pid, family: fam, proc: ctx.proc).first {
            throw refuse("joined multicast group \(g), which cryo does not restore")
        }
        if v6, let only = SocketOptions.int(c, Int32(IPPROTO_IPV6), IPV6_V6ONLY) { e.v6Only = only != 0 }
        let shut: UInt8
        do { shut = try shutdown(c, pid: f.pid, entry: e, polled: p.revents) } catch { throw refuse("shutdown state: \(error)") }
        if shut != 0 { e.shutdown = Img_SkShutdown(rawValue: Int(shut)) ?? .none }
        entry.isk = e
    }

    /// IP_HDRINCL, IP_NODEFRAG and ICMP_FILTER; IPV6_HDRINCL, IPV6_CHECKSUM and ICMPV6_FILTER.
    static func rawOptions(_ c: Int32, family: Int32, proto: Int32, refuse: (String) -> DumpError) throws -> Img_IpOptsRawEntry {
        var r = Img_IpOptsRawEntry()
        func filter(_ level: Int32, _ opt: Int32, words: Int) throws -> [UInt32] {
            var w = [UInt32](repeating: 0, count: words)
            var l = socklen_t(words * 4)
            guard w.withUnsafeMutableBytes({ getsockopt(c, level, opt, $0.baseAddress, &l) }) == 0 else {
                throw refuse("ICMP filter: \(String(cString: strerror(errno)))")
            }
            return w
        }
        if family == AF_INET6 {
            r.hdrincl = (SocketOptions.int(c, Int32(IPPROTO_IPV6), ipv6Hdrincl) ?? 0) != 0
            if let off = SocketOptions.int(c, solRaw, ipv6Checksum) {
                r.checksum = off >= 0
                if off >= 0 { r.checksumOffset = off }
            }
            if proto == Int32(IPPROTO_ICMPV6) { r.icmpvFilter = try filter(solIcmpv6, icmpv6Filter, words: 8) }
        } else {
            r.hdrincl = (SocketOptions.int(c, Int32(IPPROTO_IP), ipHdrincl) ?? 0) != 0
            r.nodefrag = (SocketOptions.int(c, Int32(IPPROTO_IP), ipNodefrag) ?? 0) != 0
            if proto == Int32(IPPROTO_ICMP) { r.icmpvFilter = try filter(solRaw, icmpFilter, words: 1) }
        }
        return r
    }

    /// sk_shutdown (RCV 1, SEND 2). These sockets are in no sock_diag table here (no raw_diag,
    /// none for ping). poll shows the receive side and both; the send side alone is probed: a
    /// packet whose body is at an unmapped address, so that allocating it answers first (EPIPE
    /// when shut) and copying the body then fails (EFAULT) before anything is sent. A raw
    /// socket allocates that way only with IP_HDRINCL: cryo's probe turns it on for the probe
    /// and back off. A probe of an unbound ping socket binds it (an ident); connect(AF_UNSPEC)
    /// unbinds it again.
    static func shutdown(_ c: Int32, pid: Int32, entry e: Img_InetSkEntry, polled: Int16) throws -> UInt8 {
        if polled & Int16(POLLHUP) != 0 { return 3 }
        let rd: UInt8 = polled & Int16(0x2000) != 0 ? 1 : 0
        let fam = Int32(e.family), raw = e.type == UInt32(SOCK_RAW.rawValue)
        // An IPv6 raw socket of a protocol past 255 can send nothing (EINVAL, before any
        // allocation): its send side alone changes nothing a program can see.
        if raw && fam == AF_INET6 && e.proto > 255 { return rd }
        let what = "\(describe(family: e.family, type: e.type, proto: e.proto)) inode \(e.ino)"
        func fail(_ call: String, _ err: Int32 = errno) -> Error { SystemCallError(call: call, errno: err, context: what) }
        let (level, opt) = fam == AF_INET6 ? (Int32(IPPROTO_IPV6), ipv6Hdrincl) : (Int32(IPPROTO_IP), ipHdrincl)
        let hdrincl = raw ? SocketOptions.int(c, level, opt) ?? 0 : 1
        var on: Int32 = 1, off: Int32 = 0
        if hdrincl == 0 && setsockopt(c, level, opt, &on, 4) != 0 { throw fail("setsockopt(HDRINCL 1) for the probe") }
        // A connected ping socket sends to its peer; the rest to loopback.
        let named = raw || e.state != 1
        let lo: [UInt32] = fam == AF_INET6 ? [0, 0, 0, UInt32(1).bigEndian] : [UInt32(0x7f00_0001).bigEndian]
        let name = InetSocket.sockaddrBytes(family: fam, addr: lo, port: 0)
        // A ping socket reads the ICMP header first (ICMP_ECHO 8, ICMPV6_ECHO_REQUEST 128); a raw
        // one with its own header needs 20 bytes at least.
        var hdr: [UInt8] = raw ? [] : [fam == AF_INET6 ? 128 : 8, 0, 0, 0, 0, 0, 0, 0]
        let bodyLen = raw ? 40 : 8
        let sent: Int = hdr.withUnsafeMutableBytes { h in
            name.withUnsafeBytes { n in
                var iov = [iovec(iov_base: UnsafeMutableRawPointer(bitPattern: 8), iov_len: bodyLen)]
                if !raw { iov.insert(iovec(iov_base: h.baseAddress, iov_len: h.count), at: 0) }
                return iov.withUnsafeMutableBufferPointer { v in
                    var m = msghdr()
                    m.msg_name = named ? UnsafeMutableRawPointer(mutating: n.baseAddress) : nil
                    m.msg_namelen = named ? socklen_t(n.count) : 0
                    m.msg_iov = v.baseAddress
                    m.msg_iovlen = v.count
                    return sendmsg(c, &m, Int32(MSG_DONTWAIT) | Int32(MSG_NOSIGNAL))
                }
            }
        }
        let err = errno
        if hdrincl == 0 && setsockopt(c, level, opt, &off, 4) != 0 { throw fail("setsockopt(HDRINCL 0) after the probe") }
        if !raw && e.srcPort == 0 {
            var unspec = sockaddr_storage()
            let rc = withUnsafePointer(to: &unspec) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sa_family_t>.size)) } }
            guard rc == 0 else { throw fail("connect(AF_UNSPEC) after the probe bound the socket") }
        }
        guard sent < 0 else { throw fail("sendmsg (the probe was sent)", 0) }
        if err == EPIPE { return rd | 2 }
        guard err == EFAULT else { throw fail("sendmsg (probing whether its send side is shut)", err) }
        return rd
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.isk
        let fam = Int32(e.family), type = Int32(e.type), proto = Int32(e.proto)
        let what = "\(describe(family: e.family, type: e.type, proto: e.proto)) id \(entry.id)"
        guard fam == AF_INET || fam == AF_INET6 else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "family \(e.family) is not IPv4 or IPv6")
        }
        let s = socket(fam, type | Int32(SOCK_CLOEXEC.rawValue), proto)
        guard s >= 0 else {
            let why = errno == EACCES && type == Int32(SOCK_DGRAM.rawValue) ? " (net.ipv4.ping_group_range must allow cryo's gid)" : ""
            throw SystemCallError(call: "socket(\(fam), \(type), \(proto))\(why)", errno: errno, context: what)
        }
        do {
            try SocketOptions.apply(e.opts, to: s, what: what)
            // A raw socket has its port (the protocol) from birth and cannot change it.
            if fam == AF_INET6 && e.hasV6Only && SocketOptions.int(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY) != (e.v6Only ? 1 : 0) {
                var v: Int32 = e.v6Only ? 1 : 0
                if setsockopt(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &v, 4) != 0 { throw SystemCallError(call: "setsockopt(IPV6_V6ONLY)", errno: errno, context: what) }
            }
            try InetOptions.apply(e, to: s, what: what)
            if e.ipOpts.hasRaw { try applyRaw(e.ipOpts.raw, family: fam, proto: proto, to: s, what: what) }
            // A raw socket's port is its protocol, set already; a ping socket's is its ident.
            let port: UInt32 = type == Int32(SOCK_RAW.rawValue) ? 0 : e.srcPort
            if port != 0 || e.srcAddr.contains(where: { $0 != 0 }) {
                let a = InetSocket.sockaddrBytes(family: fam, addr: e.srcAddr, port: port)
                let rc = a.withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "bind(port \(port))", errno: errno, context: what) }
            }
            try InetSocket.connectAndShut(s, e, family: fam, what: what)
        } catch {
            close(s)
            throw error
        }
        return try ctx.install(s, id: entry.id, what: what)
    }

    /// Sets each raw option where the fresh socket differs (IPPROTO_RAW sockets refuse to turn
    /// header inclusion off, and ICMPv6 ones to change the checksum offset).
    static func applyRaw(_ r: Img_IpOptsRawEntry, family: Int32, proto: Int32, to s: Int32, what: String) throws {
        func put(_ level: Int32, _ opt: Int32, _ v: Int32, _ name: String) throws {
            guard SocketOptions.int(s, level, opt) != v else { return }
            var x = v
            guard setsockopt(s, level, opt, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(\(name) \(v))", errno: errno, context: what) }
        }
        if family == AF_INET6 {
            if r.hasHdrincl { try put(Int32(IPPROTO_IPV6), ipv6Hdrincl, r.hdrincl ? 1 : 0, "IPV6_HDRINCL") }
            if r.hasChecksum { try put(solRaw, ipv6Checksum, r.checksum ? r.checksumOffset : -1, "IPV6_CHECKSUM") }
        } else {
            if r.hasHdrincl { try put(Int32(IPPROTO_IP), ipHdrincl, r.hdrincl ? 1 : 0, "IP_HDRINCL") }
            if r.hasNodefrag { try put(Int32(IPPROTO_IP), ipNodefrag, r.nodefrag ? 1 : 0, "IP_NODEFRAG") }
        }
        if !r.icmpvFilter.isEmpty {
            let (level, opt) = family == AF_INET6 ? (solIcmpv6, icmpv6Filter) : (solRaw, icmpFilter)
            var w = r.icmpvFilter
            let rc = w.withUnsafeMutableBytes { setsockopt(s, level, opt, $0.baseAddress, socklen_t($0.count)) }
            guard rc == 0 else { throw SystemCallError(call: "setsockopt(ICMP filter, \(w.count) words)", errno: errno, context: what) }
        }
    }
}
