import Glibc

/// Socket-level options every socket kind carries (CRIU's sk-opts): read at dump, put back at
/// restore. Options cryo cannot carry are checked too: a socket where one differs from what a
/// fresh socket has is refused, naming the option, rather than restored without it.
enum SocketOptions {
    // asm-generic/socket.h values the Glibc overlay lacks.
    static let soGetFilter: Int32 = 26, soAttachFilter: Int32 = 26, soLockFilter: Int32 = 44
    static let soBindToDevice: Int32 = 25, soPasssec: Int32 = 34, soMark: Int32 = 36, soBufLock: Int32 = 72
    static let soNoCheck: Int32 = 11, soPeekOff: Int32 = 42

    /// Options cryo does not keep, with the value a fresh socket has: any other value refuses.
    static let unkept: [(level: Int32, opt: Int32, name: String, fresh: Int32)] = [
        (SOL_SOCKET, 29, "SO_TIMESTAMP", 0), (SOL_SOCKET, 35, "SO_TIMESTAMPNS", 0),
        (SOL_SOCKET, 37, "SO_TIMESTAMPING", 0), (SOL_SOCKET, 40, "SO_RXQ_OVFL", 0),
        (SOL_SOCKET, 41, "SO_WIFI_STATUS", 0), (SOL_SOCKET, 42, "SO_PEEK_OFF", -1),
        (SOL_SOCKET, 43, "SO_NOFCS", 0), (SOL_SOCKET, 45, "SO_SELECT_ERR_QUEUE", 0),
        (SOL_SOCKET, 46, "SO_BUSY_POLL", 0), (SOL_SOCKET, 60, "SO_ZEROCOPY", 0),
        (SOL_SOCKET, 69, "SO_PREFER_BUSY_POLL", 0), (SOL_SOCKET, 75, "SO_RCVMARK", 0),
        (SOL_SOCKET, 76, "SO_PASSPIDFD", 0),
    ]

    static func int(_ s: Int32, _ level: Int32, _ opt: Int32) -> Int32? {
        var v: Int32 = 0
        var l = socklen_t(4)
        return getsockopt(s, level, opt, &v, &l) == 0 ? v : nil
    }

    /// Refuses (through `refuse`) what cannot be read or carried.
    static func read(_ s: Int32, what: String, refuse: (String) -> DumpError) throws -> Img_SkOptsEntry {
        func int(_ opt: Int32) -> Int32 { Self.int(s, SOL_SOCKET, opt) ?? 0 }
        func tv(_ opt: Int32) -> (UInt64, UInt64) {
            var t = timeval()
            var l = socklen_t(MemoryLayout<timeval>.size)
            return getsockopt(s, SOL_SOCKET, opt, &t, &l) == 0 ? (UInt64(t.tv_sec), UInt64(t.tv_usec)) : (0, 0)
        }
        for u in unkept {
            if let v = Self.int(s, u.level, u.opt), v != u.fresh {
                throw refuse("socket option \(u.name) is \(v), which cryo does not restore")
            }
        }
        var o = Img_SkOptsEntry()
        o.soSndbuf = UInt32(bitPattern: int(SO_SNDBUF))
        o.soRcvbuf = UInt32(bitPattern: int(SO_RCVBUF))
        (o.soSndTmoSec, o.soSndTmoUsec) = tv(SO_SNDTIMEO)
        (o.soRcvTmoSec, o.soRcvTmoUsec) = tv(SO_RCVTIMEO)
        o.reuseaddr = int(SO_REUSEADDR) != 0
        o.soReuseport = int(SO_REUSEPORT) != 0
        o.soPasscred = int(SO_PASSCRED) != 0
        o.soPasssec = int(soPasssec) != 0
        o.soPriority = UInt32(bitPattern: int(SO_PRIORITY))
        o.soRcvlowat = UInt32(bitPattern: int(SO_RCVLOWAT))
        o.soMark = UInt32(bitPattern: int(soMark))
        o.soDontroute = int(SO_DONTROUTE) != 0
        o.soNoCheck = int(soNoCheck) != 0
        o.soBroadcast = int(SO_BROADCAST) != 0
        o.soKeepalive = int(SO_KEEPALIVE) != 0
        o.soOobinline = UInt32(bitPattern: int(SO_OOBINLINE))
        if let lock = Self.int(s, SOL_SOCKET, soBufLock) { o.soBufLock = UInt32(bitPattern: lock) }
        var lin = linger()
        var ll = socklen_t(MemoryLayout<linger>.size)
        if getsockopt(s, SOL_SOCKET, SO_LINGER, &lin, &ll) == 0 && lin.l_onoff != 0 { o.soLinger = UInt32(bitPattern: lin.l_linger) }
        var dev = [CChar](repeating: 0, count: 32)
        var dl = socklen_t(dev.count)
        if getsockopt(s, SOL_SOCKET, soBindToDevice, &dev, &dl) == 0 && dl > 0 && dev[0] != 0 {
            o.soBoundDev = String(cString: dev)
        }
        o.soFilter = try filter(s, refuse: refuse)
        if !o.soFilter.isEmpty { o.soLockFilter = int(soLockFilter) != 0 }
        return o
    }

    /// The classic BPF program attached with SO_ATTACH_FILTER, one struct sock_filter (u16 code,
    /// u8 jt, u8 jf, u32 k) per word, as CRIU keeps it. An eBPF program has no classic form.
    static func filter(_ s: Int32, refuse: (String) -> DumpError) throws -> [UInt64] {
        var blocks = socklen_t(0)
        // With length 0 the kernel answers the number of blocks, in the length.
        guard getsockopt(s, SOL_SOCKET, soGetFilter, nil, &blocks) == 0 else {
            if errno == EACCES { throw refuse("an eBPF socket filter (SO_ATTACH_BPF), which cryo cannot read back") }
            throw refuse("SO_GET_FILTER: \(String(cString: strerror(errno)))")
        }
        guard blocks > 0 else { return [] }
        var words = [UInt64](repeating: 0, count: Int(blocks))
        var n = blocks
        guard words.withUnsafeMutableBytes({ getsockopt(s, SOL_SOCKET, soGetFilter, $0.baseAddress, &n) }) == 0 else {
            throw refuse("SO_GET_FILTER (\(blocks) blocks): \(String(cString: strerror(errno)))")
        }
        return Array(words.prefix(Int(n)))
    }

    /// Puts back what `read` took. Buffer sizes are halved: the kernel doubles what it is given.
    static func apply(_ o: Img_SkOptsEntry, to s: Int32, what: String) throws {
        func set(_ level: Int32, _ opt: Int32, _ v: Int32, _ name: String) throws {
            var x = v
            guard setsockopt(s, level, opt, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(\(name))", errno: errno, context: what) }
        }
        /// Only where the fresh socket differs: some need privileges only to change them.
        func put(_ opt: Int32, _ v: Int32, _ name: String) throws {
            if int(s, SOL_SOCKET, opt) != v { try set(SOL_SOCKET, opt, v, name) }
        }
        func settv(_ opt: Int32, _ sec: UInt64, _ usec: UInt64) throws {
            guard sec != 0 || usec != 0 else { return }
            var t = timeval(tv_sec: Int(sec), tv_usec: Int(usec))
            guard setsockopt(s, SOL_SOCKET, opt, &t, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw SystemCallError(call: "setsockopt(timeout)", errno: errno, context: what)
            }
        }
        if o.soSndbuf > 0 { try set(SOL_SOCKET, SO_SNDBUF, Int32(bitPattern: o.soSndbuf / 2), "SO_SNDBUF") }
        if o.soRcvbuf > 0 { try set(SOL_SOCKET, SO_RCVBUF, Int32(bitPattern: o.soRcvbuf / 2), "SO_RCVBUF") }
        // Setting a size locks it (no autotuning); the dumped locks, whatever they were, go back.
        if o.hasSoBufLock { try set(SOL_SOCKET, soBufLock, Int32(bitPattern: o.soBufLock), "SO_BUF_LOCK") }
        try settv(SO_SNDTIMEO, o.soSndTmoSec, o.soSndTmoUsec)
        try settv(SO_RCVTIMEO, o.soRcvTmoSec, o.soRcvTmoUsec)
        if o.reuseaddr { try set(SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR") }
        if o.soReuseport { try set(SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") }
        if o.soPasscred { try set(SOL_SOCKET, SO_PASSCRED, 1, "SO_PASSCRED") }
        if o.soPasssec { try set(SOL_SOCKET, soPasssec, 1, "SO_PASSSEC") }
        if o.hasSoPriority { try put(SO_PRIORITY, Int32(bitPattern: o.soPriority), "SO_PRIORITY") }
        if o.hasSoRcvlowat { try put(SO_RCVLOWAT, Int32(bitPattern: o.soRcvlowat), "SO_RCVLOWAT") }
        if o.hasSoMark { try put(soMark, Int32(bitPattern: o.soMark), "SO_MARK") }
        if o.soDontroute { try set(SOL_SOCKET, SO_DONTROUTE, 1, "SO_DONTROUTE") }
        if o.soNoCheck { try set(SOL_SOCKET, soNoCheck, 1, "SO_NO_CHECK") }
        if o.soBroadcast { try set(SOL_SOCKET, SO_BROADCAST, 1, "SO_BROADCAST") }
        if o.soKeepalive { try set(SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE") }
        if o.soOobinline != 0 { try set(SOL_SOCKET, SO_OOBINLINE, 1, "SO_OOBINLINE") }
        if o.hasSoLinger {
            var lin = linger(l_onoff: 1, l_linger: Int32(bitPattern: o.soLinger))
            guard setsockopt(s, SOL_SOCKET, SO_LINGER, &lin, socklen_t(MemoryLayout<linger>.size)) == 0 else {
                throw SystemCallError(call: "setsockopt(SO_LINGER)", errno: errno, context: what)
            }
        }
        if o.hasSoBoundDev && !o.soBoundDev.isEmpty {
            let rc = o.soBoundDev.withCString { setsockopt(s, SOL_SOCKET, soBindToDevice, $0, socklen_t(strlen($0) + 1)) }
            guard rc == 0 else { throw SystemCallError(call: "setsockopt(SO_BINDTODEVICE \(o.soBoundDev))", errno: errno, context: what) }
        }
        if !o.soFilter.isEmpty {
            guard o.soFilter.count <= 4096 else {
                throw SystemCallError(call: "setsockopt(SO_ATTACH_FILTER): \(o.soFilter.count) blocks", errno: EINVAL, context: what)
            }
            var prog = o.soFilter
            // struct sock_fprog: unsigned short len, then (padded) the pointer.
            let rc = prog.withUnsafeMutableBytes { p -> Int32 in
                var fprog: (UInt16, UInt16, UInt32, UnsafeMutableRawPointer?) = (UInt16(o.soFilter.count), 0, 0, p.baseAddress)
                return setsockopt(s, SOL_SOCKET, soAttachFilter, &fprog, socklen_t(MemoryLayout.size(ofValue: fprog)))
            }
            guard rc == 0 else { throw SystemCallError(call: "setsockopt(SO_ATTACH_FILTER, \(o.soFilter.count) blocks)", errno: errno, context: what) }
            if o.soLockFilter { try set(SOL_SOCKET, soLockFilter, 1, "SO_LOCK_FILTER") }
        }
    }
}

/// IP and TCP level options of inet sockets (CRIU's ip_opts and tcp_opts), and the inet
/// options cryo does not keep, refused when they differ from a fresh socket's.
enum InetOptions {
    static let ipTos: Int32 = 1, ipTtl: Int32 = 2, ipPktinfo: Int32 = 8, ipFreebind: Int32 = 15
    static let tcpNodelay: Int32 = 1, tcpCork: Int32 = 3, tcpKeepidle: Int32 = 4, tcpKeepintvl: Int32 = 5, tcpKeepcnt: Int32 = 6
    static let ipv6Tclass: Int32 = 67
    static let udpliteSendCscov: Int32 = 10, udpliteRecvCscov: Int32 = 11

    static let unkept: [(level: Int32, opt: Int32, name: String, fresh: Int32, v4: Bool, tcp: Bool?)] = [
        (Int32(IPPROTO_IP), 6, "IP_RECVOPTS", 0, true, nil), (Int32(IPPROTO_IP), 7, "IP_RETOPTS", 0, true, nil),
        (Int32(IPPROTO_IP), 11, "IP_RECVERR", 0, true, nil), (Int32(IPPROTO_IP), 12, "IP_RECVTTL", 0, true, nil),
        (Int32(IPPROTO_IP), 13, "IP_RECVTOS", 0, true, nil), (Int32(IPPROTO_IP), 19, "IP_TRANSPARENT", 0, true, nil),
        (Int32(IPPROTO_IP), 20, "IP_RECVORIGDSTADDR", 0, true, nil), (Int32(IPPROTO_IP), 24, "IP_BIND_ADDRESS_NO_PORT", 0, true, nil),
        (Int32(IPPROTO_IP), 33, "IP_MULTICAST_TTL", 1, true, false), (Int32(IPPROTO_IP), 34, "IP_MULTICAST_LOOP", 1, true, false),
        (Int32(IPPROTO_IP), 49, "IP_MULTICAST_ALL", 1, true, false),
        (Int32(IPPROTO_IPV6), 67, "IPV6_TCLASS", 0, false, nil), (Int32(IPPROTO_IPV6), 25, "IPV6_RECVERR", 0, false, nil),
        (Int32(IPPROTO_IPV6), 49, "IPV6_RECVPKTINFO", 0, false, nil), (Int32(IPPROTO_IPV6), 75, "IPV6_TRANSPARENT", 0, false, nil),
        (Int32(IPPROTO_IPV6), 16, "IPV6_UNICAST_HOPS", 64, false, nil),
        (Int32(IPPROTO_TCP), 9, "TCP_DEFER_ACCEPT", 0, true, true), (Int32(IPPROTO_TCP), 18, "TCP_USER_TIMEOUT", 0, true, true),
        (Int32(IPPROTO_TCP), 23, "TCP_FASTOPEN", 0, true, true),
        (Int32(IPPROTO_TCP), 25, "TCP_NOTSENT_LOWAT", 0, true, true), (Int32(IPPROTO_TCP), 16, "TCP_THIN_LINEAR_TIMEOUTS", 0, true, true),
        (Int32(IPPROTO_TCP), 27, "TCP_SAVE_SYN", 0, true, true), (Int32(IPPROTO_TCP), 36, "TCP_INQ", 0, true, true),
        (Int32(IPPROTO_UDP), 1, "UDP_CORK", 0, true, false), (Int32(IPPROTO_UDP), 100, "UDP_ENCAP", 0, true, false),
        (Int32(IPPROTO_UDP), 103, "UDP_SEGMENT", 0, true, false), (Int32(IPPROTO_UDP), 104, "UDP_GRO", 0, true, false),
    ]

    static func read(_ s: Int32, family: Int32, tcp: Bool, refuse: (String) -> DumpError) throws -> (ip: Img_IpOptsEntry?, tcp: Img_TcpOptsEntry?) {
        for u in unkept where (u.level == Int32(IPPROTO_IP) || u.level == Int32(IPPROTO_IPV6)) ? (u.v4 == (family == AF_INET)) : true {
            if let t = u.tcp, t != tcp { continue }
            if let v = SocketOptions.int(s, u.level, u.opt), v != u.fresh {
                throw refuse("socket option \(u.name) is \(v), which cryo does not restore")
            }
        }
        if family == AF_INET {
            // IP_OPTIONS (record route, timestamps...): CRIU's ip_opts has no place for them.
            var opts = [UInt8](repeating: 0, count: 40)
            var l = socklen_t(opts.count)
            if opts.withUnsafeMutableBytes({ getsockopt(s, Int32(IPPROTO_IP), 4 /* IP_OPTIONS */, $0.baseAddress, &l) }) == 0, l > 0 {
                throw refuse("socket option IP_OPTIONS is set (\(l) bytes), which cryo does not restore")
            }
        }
        if family == AF_INET6, let v4 = SocketOptions.int(s, Int32(IPPROTO_IPV6), 26 /* IPV6_V6ONLY */), v4 == 0 {
            // A dual-stack socket also carries IPv4 options; they matter for its v4 traffic.
            for (opt, name, fresh) in [(ipTos, "IP_TOS", Int32(0))] {
                if let v = SocketOptions.int(s, Int32(IPPROTO_IP), opt), v != fresh { throw refuse("socket option \(name) is \(v) on an IPv6 socket, which cryo does not restore") }
            }
        }
        var ip: Img_IpOptsEntry?
        if family == AF_INET {
            var o = Img_IpOptsEntry()
            let level = Int32(IPPROTO_IP)
            o.tos = UInt32(bitPattern: SocketOptions.int(s, level, ipTos) ?? 0)
            o.ttl = UInt32(bitPattern: SocketOptions.int(s, level, ipTtl) ?? 64)
            o.pktinfo = (SocketOptions.int(s, level, ipPktinfo) ?? 0) != 0
            o.freebind = (SocketOptions.int(s, level, ipFreebind) ?? 0) != 0
            ip = o
        } else if family == AF_INET6 {
            // IPV6_FREEBIND is the same flag; the rest of ip_opts is IPv4's.
            var o = Img_IpOptsEntry()
            o.freebind = (SocketOptions.int(s, Int32(IPPROTO_IP), ipFreebind) ?? 0) != 0
            ip = o
        }
        var t: Img_TcpOptsEntry?
        if tcp {
            var o = Img_TcpOptsEntry()
            let level = Int32(IPPROTO_TCP)
            o.nodelay = (SocketOptions.int(s, level, tcpNodelay) ?? 0) != 0
            o.cork = (SocketOptions.int(s, level, tcpCork) ?? 0) != 0
            o.keepidle = UInt32(bitPattern: SocketOptions.int(s, level, tcpKeepidle) ?? 0)
            o.keepintvl = UInt32(bitPattern: SocketOptions.int(s, level, tcpKeepintvl) ?? 0)
            o.keepcnt = UInt32(bitPattern: SocketOptions.int(s, level, tcpKeepcnt) ?? 0)
            t = o
        }
        return (ip, t)
    }

    /// Sets each option where the fresh socket `s` differs from the image.
    static func apply(_ e: Img_InetSkEntry, to s: Int32, what: String) throws {
        func put(_ level: Int32, _ opt: Int32, _ v: UInt32, _ name: String) throws {
            let want = Int32(bitPattern: v)
            guard SocketOptions.int(s, level, opt) != want else { return }
            var x = want
            guard setsockopt(s, level, opt, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(\(name) \(want))", errno: errno, context: what) }
        }
        if e.hasIpOpts {
            let o = e.ipOpts, level = Int32(IPPROTO_IP)
            if o.hasTos { try put(level, ipTos, o.tos, "IP_TOS") }
            if o.hasTtl { try put(level, ipTtl, o.ttl, "IP_TTL") }
            if o.hasPktinfo { try put(level, ipPktinfo, o.pktinfo ? 1 : 0, "IP_PKTINFO") }
            if o.hasFreebind { try put(level, ipFreebind, o.freebind ? 1 : 0, "IP_FREEBIND") }
        }
        if e.hasTcpOpts {
            let o = e.tcpOpts, level = Int32(IPPROTO_TCP)
            if o.hasKeepidle && o.keepidle > 0 { try put(level, tcpKeepidle, o.keepidle, "TCP_KEEPIDLE") }
            if o.hasKeepintvl && o.keepintvl > 0 { try put(level, tcpKeepintvl, o.keepintvl, "TCP_KEEPINTVL") }
            if o.hasKeepcnt && o.keepcnt > 0 { try put(level, tcpKeepcnt, o.keepcnt, "TCP_KEEPCNT") }
            if o.hasNodelay { try put(level, tcpNodelay, o.nodelay ? 1 : 0, "TCP_NODELAY") }
            if o.hasCork { try put(level, tcpCork, o.cork ? 1 : 0, "TCP_CORK") }
        }
    }

    /// sk_shutdown (RCV_SHUTDOWN 1, SEND_SHUTDOWN 2) of cryo's copy `c`: inet_diag shows it
    /// for the sockets in the kernel's tables. An unbound one is in none; poll tells its
    /// receive side (EPOLLRDHUP) and both (EPOLLHUP, a datagram socket only, a closed TCP
    /// one always says it), not a send side shut alone: an unbound UDP socket's send side is
    /// probed (`udpSendShut`).
    static func shutdown(_ c: Int32, family: Int32, proto: Int32, ino: UInt32, port: Int) throws -> UInt8 {
        if let d = try SockDiag.inet(family: family, proto: proto, ino: ino) { return d.shutdown & 3 }
        var p = pollfd(fd: c, events: Int16(0x2000) /* POLLRDHUP */, revents: 0)
        guard poll(&p, 1, 0) >= 0 else { throw SystemCallError(call: "poll", errno: errno, context: "socket inode \(ino)") }
        let udp = proto == Int32(IPPROTO_UDP) || proto == Int32(IPPROTO_UDPLITE)
        if p.revents & Int16(POLLHUP) != 0 && udp { return 3 }
        let rd: UInt8 = p.revents & Int16(0x2000) /* POLLRDHUP */ != 0 ? 1 : 0
        guard udp else { return rd }
        // A port with no table entry would be a socket of another namespace: a probe would go astray.
        guard port == 0 else { throw SystemCallError(call: "inet_diag (a bound UDP socket it does not list)", errno: ENOENT, context: "socket inode \(ino), port \(port)") }
        return try udpSendShut(c, family: family, proto: proto, ino: ino) ? rd | 2 : rd
    }

    /// Whether an unbound UDP socket's send side is shut. No interface shows it, so it is asked
    /// the way a program would: an empty datagram to a sink of cryo's on loopback, corked
    /// (MSG_MORE) so the answer comes from allocating it (EPIPE from sock_alloc_send_skb when
    /// shut) before any firewall, such as the network lock, sees it. Uncorking sends it to the
    /// sink. The send autobinds the socket; connect(AF_UNSPEC) unbinds it again (no
    /// SOCK_BINDPORT_LOCK), and the device binding it clears is put back. Any other answer
    /// refuses: the state stays unknown.
    static func udpSendShut(_ c: Int32, family: Int32, proto: Int32 = Int32(IPPROTO_UDP), ino: UInt32) throws -> Bool {
        let what = "unbound UDP socket inode \(ino)"
        func fail(_ call: String, _ e: Int32 = errno) -> Error { SystemCallError(call: call, errno: e, context: what) }
        let dev = SocketOptions.int(c, SOL_SOCKET, 62 /* SO_BINDTOIFINDEX */) ?? 0
        let sink = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), proto)
        guard sink >= 0 else { throw fail("socket (the probe's sink)") }
        defer { close(sink) }
        var ss = sockaddr_storage()
        var len: socklen_t
        if family == AF_INET6 {
            len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &ss) { b in
                let a = b.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                a.pointee.sin6_family = sa_family_t(AF_INET6)
                a.pointee.sin6_addr = in6addr_loopback
            }
        } else {
            len = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &ss) { b in
                let a = b.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                a.pointee.sin_family = sa_family_t(AF_INET)
                a.pointee.sin_addr.s_addr = in_addr_t(0x7f00_0001).bigEndian
            }
        }
        let bound = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sink, $0, len) } }
        guard bound == 0 else { throw fail("bind (the probe's sink on loopback)") }
        len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        guard withUnsafeMutablePointer(to: &ss, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sink, $0, &len) } }) == 0 else {
            throw fail("getsockname (the probe's sink)")
        }
        let cork = SocketOptions.int(c, Int32(IPPROTO_UDP), 1 /* UDP_CORK */) ?? 0
        let sent = withUnsafePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(c, nil, 0, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT) | Int32(MSG_MORE), $0, len) }
        }
        let sendErrno = errno
        if sent == 0 {
            var off: Int32 = 0, on = cork
            guard setsockopt(c, Int32(IPPROTO_UDP), 1 /* UDP_CORK */, &off, 4) == 0 else { throw fail("setsockopt(UDP_CORK 0) to flush the probe") }
            if cork != 0 && setsockopt(c, Int32(IPPROTO_UDP), 1, &on, 4) != 0 { throw fail("setsockopt(UDP_CORK \(cork)) after the probe") }
        }
        var unspec = sockaddr_storage()
        let undone = withUnsafePointer(to: &unspec) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(c, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
        guard undone == 0 else { throw fail("connect(AF_UNSPEC) after the probe left the socket bound") }
        if dev != 0 {
            var d = dev
            guard setsockopt(c, SOL_SOCKET, 62 /* SO_BINDTOIFINDEX */, &d, 4) == 0 else { throw fail("setsockopt(SO_BINDTOIFINDEX \(dev)) after the probe") }
        }
        if sent == 0 { return false }
        guard sendErrno == EPIPE else { throw fail("sendto (probing whether its send side is shut)", sendErrno) }
        return true
    }

    /// sk_shutdown as inet_diag shows it (RCV_SHUTDOWN 1, SEND_SHUTDOWN 2).
    static func shutdownHow(_ s: Img_SkShutdown) -> Int32? {
        switch s { case .read: Int32(SHUT_RD); case .write: Int32(SHUT_WR); case .both: Int32(SHUT_RDWR); default: nil }
    }
}
