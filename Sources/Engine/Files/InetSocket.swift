import CKernel
import Glibc

/// UDP and UDP-lite sockets, IPv4 and IPv6: bound address and port, connected peer, options
/// (UDP-lite's checksum coverage in cryo's fields). Datagrams
/// waiting in the receive queue cannot be sent again with their original sources, so a dump
/// with any queued is refused rather than silently dropping them. TCP is TcpSocket's; both
/// share CRIU's INETSK entry, so restore hands stream sockets over to it.
enum InetSocket: FdKind {
    static let name = "UDP socket"
    static let type = Img_FdTypes.inetsk

    static func claims(_ f: OpenFd) -> Bool {
        guard f.target.hasPrefix("socket:[") else { return false }
        let p = SockDiag.protocolName(pid: f.pid, fd: f.fd)
        return p == "UDP" || p == "UDPv6" || p == "UDP-Lite" || p == "UDPLITEv6"
    }

    /// (family, address words as CRIU stores them: network byte order in memory, port)
    /// `closed`: the peer through SO_PEERNAME, which a TCP socket in CLOSE still answers.
    static func address(_ s: Int32, peer: Bool, closed: Bool = false) -> (family: Int32, addr: [UInt32], port: UInt16)? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        func call(_ f: (UnsafeMutablePointer<sockaddr>) -> Int32) -> Int32 {
            withUnsafeMutablePointer(to: &ss) { p in p.withMemoryRebound(to: sockaddr.self, capacity: 1, f) }
        }
        var rc: Int32 = -1
        if closed {
            // SO_PEERNAME wants a length no longer than the address: IPv6's, else IPv4's.
            for l in [28, 16] {
                len = socklen_t(l)
                rc = call { getsockopt(s, SOL_SOCKET, 28 /* SO_PEERNAME */, $0, &len) }
                if rc == 0 || errno != EINVAL { break }
            }
        } else {
            rc = call { peer ? getpeername(s, $0, &len) : getsockname(s, $0, &len) }
        }
        guard rc == 0 else { return nil }
        return withUnsafeBytes(of: &ss) { b -> (Int32, [UInt32], UInt16)? in
            let fam = Int32(b.load(fromByteOffset: 0, as: UInt16.self))
            let port = UInt16(bigEndian: b.load(fromByteOffset: 2, as: UInt16.self))
            switch fam {
            case AF_INET: return (fam, [b.load(fromByteOffset: 4, as: UInt32.self)], port)
            case AF_INET6: return (fam, (0..<4).map { b.load(fromByteOffset: 8 + 4 * $0, as: UInt32.self) }, port)
            default: return nil
            }
        }
    }

    static func sockaddrBytes(family: Int32, addr: [UInt32], port: UInt32) -> [UInt8] {
        var b: [UInt8] = []
        b.append(UInt8(family & 0xff)); b.append(UInt8(family >> 8))
        b.append(UInt8(port >> 8 & 0xff)); b.append(UInt8(port & 0xff))
        if family == AF_INET {
            withUnsafeBytes(of: addr.first ?? 0) { b += $0 }
            b += [UInt8](repeating: 0, count: 8)
        } else {
            b += [0, 0, 0, 0]  // flowinfo
            for w in addr.prefix(4) { withUnsafeBytes(of: w) { b += $0 } }
            b += [0, 0, 0, 0]  // scope id
        }
        return b
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let c = try ctx.copy(of: f)
        var queued: Int32 = 0
        guard ck_ioctl(c, UInt(FIONREAD), &queued) == 0 else { throw refuse("SIOCINQ: \(String(cString: strerror(errno)))") }
        if queued > 0 { throw refuse("datagrams in its receive queue (\(queued) bytes in the first), which cryo cannot send again from their sources") }
        guard let src = address(c, peer: false) else { throw refuse("getsockname: \(String(cString: strerror(errno)))") }
        let dst = address(c, peer: true)
        var e = Img_InetSkEntry()
        e.id = id
        e.ino = UInt32(truncatingIfNeeded: f.stat.st_ino)
        e.family = UInt32(src.family)
        e.type = UInt32(SOCK_DGRAM.rawValue)
        let proto = SocketOptions.int(c, SOL_SOCKET, SO_PROTOCOL) ?? Int32(IPPROTO_UDP)
        e.proto = UInt32(proto)
        if proto == Int32(IPPROTO_UDPLITE) {
            e.udpliteSendCscov = UInt32(bitPattern: SocketOptions.int(c, Int32(IPPROTO_UDPLITE), InetOptions.udpliteSendCscov) ?? 0)
            e.udpliteRecvCscov = UInt32(bitPattern: SocketOptions.int(c, Int32(IPPROTO_UDPLITE), InetOptions.udpliteRecvCscov) ?? 0)
        }
        e.state = dst == nil ? 7 /* TCP_CLOSE */ : 1 /* TCP_ESTABLISHED */
        e.srcPort = UInt32(src.port)
        e.dstPort = UInt32(dst?.port ?? 0)
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.backlog = 0
        e.srcAddr = src.addr
        e.dstAddr = dst?.addr ?? []
        e.fown = FdKinds.noOwner
        e.opts = try SocketOptions.read(c, what: "pid \(f.pid) fd \(f.fd)", refuse: refuse)
        if let ip = try InetOptions.read(c, family: src.family, tcp: false, refuse: refuse).ip { e.ipOpts = ip }
        if let g = try MulticastMemberships.joined(c, pid: f.pid, family: src.family, proc: ctx.proc).first {
            throw refuse("joined multicast group \(g), which cryo does not restore")
        }
        let shut: UInt8
        do { shut = try InetOptions.shutdown(c, family: src.family, proto: proto, ino: e.ino, port: Int(src.port)) } catch { throw refuse("shutdown state: \(error)") }
        if shut != 0 { e.shutdown = Img_SkShutdown(rawValue: Int(shut)) ?? .none }
        if src.family == AF_INET6 {
            var v: Int32 = 0
            var l = socklen_t(4)
            if getsockopt(c, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &v, &l) == 0 { e.v6Only = v != 0 }
        }
        entry.isk = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        // One description held by several tasks (a socket made before fork) is made once and
        // sent to each: a second socket could not take the same address.
        if let made = ctx.objects[entry.id] {
            return try ctx.transport.send(made, to: ctx.task, what: "socket id \(entry.id) (port \(entry.isk.srcPort))")
        }
        if entry.isk.type == UInt32(SOCK_STREAM.rawValue) { return try TcpSocket.restore(entry, ctx: ctx) }
        if RawSocket.owns(entry.isk) { return try RawSocket.restore(entry, ctx: ctx) }
        let e = entry.isk
        let what = "UDP socket id \(entry.id) (port \(e.srcPort))"
        let fam = Int32(e.family)
        guard e.type == UInt32(SOCK_DGRAM.rawValue), fam == AF_INET || fam == AF_INET6 else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "family \(e.family) type \(e.type) is not UDP")
        }
        let lite = e.proto == UInt32(IPPROTO_UDPLITE)
        let s = socket(fam, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), lite ? Int32(IPPROTO_UDPLITE) : Int32(IPPROTO_UDP))
        guard s >= 0 else { throw SystemCallError(call: lite ? "socket(UDP-lite)" : "socket(UDP)", errno: errno, context: what) }
        do {
            for (opt, v, name) in [(InetOptions.udpliteSendCscov, e.udpliteSendCscov, "UDPLITE_SEND_CSCOV"), (InetOptions.udpliteRecvCscov, e.udpliteRecvCscov, "UDPLITE_RECV_CSCOV")] where lite && v != 0 {
                var x = Int32(bitPattern: v)
                guard setsockopt(s, Int32(IPPROTO_UDPLITE), opt, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(\(name) \(v))", errno: errno, context: what) }
            }
            try SocketOptions.apply(e.opts, to: s, what: what)
            if fam == AF_INET6 && e.hasV6Only {
                var v: Int32 = e.v6Only ? 1 : 0
                setsockopt(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &v, 4)
            }
            // IP_FREEBIND and the like change what bind() takes.
            try InetOptions.apply(e, to: s, what: what)
            // An unbound socket (port 0) is left unbound: the kernel picks on first use.
            if e.srcPort != 0 || e.srcAddr.contains(where: { $0 != 0 }) {
                // Sockets sharing a port through SO_REUSEPORT, some of which turned it off after
                // binding: each binds with it on, then gets its own value back (as CRIU does).
                // Likewise IP_FREEBIND: the address took it when bound, and may be gone here.
                var on: Int32 = 1, off: Int32 = 0, freebind: Int32 = e.ipOpts.freebind ? 1 : 0
                if !e.opts.soReuseport && setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &on, 4) != 0 { throw SystemCallError(call: "setsockopt(SO_REUSEPORT 1)", errno: errno, context: what) }
                if setsockopt(s, Int32(IPPROTO_IP), InetOptions.ipFreebind, &on, 4) != 0 { throw SystemCallError(call: "setsockopt(IP_FREEBIND 1)", errno: errno, context: what) }
                let a = sockaddrBytes(family: fam, addr: e.srcAddr, port: e.srcPort)
                let rc = a.withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "bind(port \(e.srcPort))", errno: errno, context: what) }
                if !e.opts.soReuseport && setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &off, 4) != 0 { throw SystemCallError(call: "setsockopt(SO_REUSEPORT 0)", errno: errno, context: what) }
                if setsockopt(s, Int32(IPPROTO_IP), InetOptions.ipFreebind, &freebind, 4) != 0 { throw SystemCallError(call: "setsockopt(IP_FREEBIND \(freebind))", errno: errno, context: what) }
            }
            try connectAndShut(s, e, family: fam, what: what)
        } catch {
            close(s)
            throw error
        }
        return try ctx.install(s, id: entry.id, what: what)
    }

    /// The last steps of a datagram-like socket's restore (UDP, raw, ICMP): its peer, its
    /// shutdown state and its file flags.
    static func connectAndShut(_ s: Int32, _ e: Img_InetSkEntry, family fam: Int32, what: String) throws {
        if e.state == 1 {
            let a = sockaddrBytes(family: fam, addr: e.dstAddr, port: e.dstPort)
            let rc = a.withUnsafeBytes { connect(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
            guard rc == 0 else { throw SystemCallError(call: "connect(port \(e.dstPort))", errno: errno, context: what) }
        }
        // An unconnected socket says ENOTCONN but is shut down all the same (inet_shutdown).
        if let how = InetOptions.shutdownHow(e.shutdown), Glibc.shutdown(s, how) != 0 && errno != ENOTCONN {
            throw SystemCallError(call: "shutdown(\(how))", errno: errno, context: what)
        }
        try FileFlags.set(s, e.flags, what: what)
    }
}
