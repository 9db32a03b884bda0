import CKernel
import Glibc

/// TCP sockets, IPv4 and IPv6, the way CRIU takes them: unconnected (bound or not), listening,
/// and established connections through TCP_REPAIR. An established connection is put in repair
/// mode while dumped and left there until the dump ends (see FileDumpContext.finishRepair):
/// a killed tree's connections then vanish without a FIN or RST, and a tree left running gets
/// them back live. Half-closed connections go the same way, their FINs put back by TcpFins.
/// SYN_SENT, SYN_RECV, TIME_WAIT and listeners with connections not yet accepted are refused.
enum TcpSocket: FdKind {
    static let name = "TCP socket"
    static let type = Img_FdTypes.inetsk

    static func claims(_ f: OpenFd) -> Bool {
        guard f.target.hasPrefix("socket:[") else { return false }
        let p = SockDiag.protocolName(pid: f.pid, fd: f.fd)
        return p == "TCP" || p == "TCPv6"
    }

    // MARK: dump

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let what = "pid \(f.pid) fd \(f.fd)"
        // Restore makes TCP sockets in the namespace its thread is in: cryo's own, or the
        // tree's own (docs/NETNS.md), which the dump's thread then is in too. A task in any
        // other one is refused here rather than restored into the wrong one.
        var mine = stat(), theirs = stat()
        if stat("/proc/thread-self/ns/net", &mine) == 0 && stat("/proc/\(f.pid)/ns/net", &theirs) == 0 && mine.st_ino != theirs.st_ino {
            throw refuse("TCP socket in network namespace net:[\(theirs.st_ino)], cryo runs in net:[\(mine.st_ino)]; run cryo inside the task's (ip netns exec, nsenter --net)")
        }
        let c = try ctx.copy(of: f)
        guard let info = TcpRepair.info(c) else { throw refuse("TCP_INFO: \(String(cString: strerror(errno)))") }
        let state = info.state
        guard TcpState.connected.contains(state) || state == TcpState.listen || state == TcpState.close else {
            throw refuse("TCP state \(TcpState.name(state)), which cryo cannot dump (only unconnected, listening, established and half-closed sockets)")
        }
        if state == TcpState.listen && info.listenQueued > 0 {
            throw refuse("listening socket with \(info.listenQueued) connection(s) not yet accepted, which cryo cannot dump")
        }
        guard let src = InetSocket.address(c, peer: false) else { throw refuse("getsockname: \(String(cString: strerror(errno)))") }
        var e = Img_InetSkEntry()
        e.id = id
        e.ino = UInt32(truncatingIfNeeded: f.stat.st_ino)
        e.family = UInt32(src.family)
        e.type = UInt32(SOCK_STREAM.rawValue)
        e.proto = UInt32(IPPROTO_TCP)
        e.state = UInt32(state)
        e.srcPort = UInt32(src.port)
        e.srcAddr = src.addr
        e.dstPort = 0
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.backlog = state == TcpState.listen ? info.listenBacklog : 0
        e.fown = FdKinds.noOwner
        e.opts = try SocketOptions.read(c, what: what, refuse: refuse)
        let (ip, tcpOpts) = try InetOptions.read(c, family: src.family, tcp: true, refuse: refuse)
        if let ip { e.ipOpts = ip }
        if let tcpOpts { e.tcpOpts = tcpOpts }
        let shut: UInt8
        do { shut = try InetOptions.shutdown(c, family: src.family, proto: Int32(IPPROTO_TCP), ino: e.ino, port: Int(src.port)) } catch { throw refuse("shutdown state: \(error)") }
        if shut != 0 {
            // Only an established connection shut for reading stays established.
            if state == TcpState.established && shut & 2 != 0 { throw refuse("an established connection shut down for writing, which cryo cannot restore") }
            e.shutdown = Img_SkShutdown(rawValue: Int(shut)) ?? .none
        }
        if src.family == AF_INET6 {
            var v: Int32 = 0
            var l = socklen_t(4)
            if getsockopt(c, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &v, &l) == 0 { e.v6Only = v != 0 }
        }
        // A closed connection keeps its peer's address (SO_PEERNAME answers in CLOSE, where
        // getpeername does not), its EOF and its EPIPE: carried as a connection.
        var closedPeer: (family: Int32, addr: [UInt32], port: UInt16)?
        if state == TcpState.close, let p = InetSocket.address(c, peer: true, closed: true), p.port != 0 {
            guard info.segsIn >= 2 else { throw refuse("a connection that was refused or reset before it was established (state CLOSE, peer \(TcpRepair.describe(p))), which cryo cannot restore") }
            closedPeer = p
        }
        if TcpState.carried(state, hasPeer: closedPeer != nil) {
            guard let dst = closedPeer ?? InetSocket.address(c, peer: true) else { throw refuse("getpeername: \(String(cString: strerror(errno)))") }
            e.dstPort = UInt32(dst.port)
            e.dstAddr = dst.addr
            // The repair-mode copy outlives this task's copies: it is what finishRepair turns
            // off (or just closes) when the dump ends, whatever happens in between.
            let r = dup(c)
            guard r >= 0 else { throw SystemCallError(call: "dup", errno: errno, context: what) }
            guard TcpRepair.set(r, TcpRepair.repair, 1) == 0 else {
                let err = errno
                close(r)
                throw refuse("TCP_REPAIR on: \(String(cString: strerror(err))) (needs CAP_NET_ADMIN)")
            }
            let conn = "\(what) \(TcpRepair.describe(src)) -> \(TcpRepair.describe(dst))"
            ctx.repaired.append((fd: r, what: conn, reuseaddr: e.opts.reuseaddr))
            let (stream, bytes) = try TcpRepair.take(r, state: state, what: what, refuse: refuse)
            if state == TcpState.close && stream.outqLen > 0 {
                throw refuse("a closed connection (peer \(TcpRepair.describe(dst))) with \(stream.outqLen) bytes the peer never acknowledged (it was reset), which cryo cannot restore")
            }
            ctx.tcpStreams.append((ino: e.ino, entry: stream, bytes: bytes, fd: r, what: conn, state: state))
        }
        entry.isk = e
    }

    // MARK: restore

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let e = entry.isk
        let fam = Int32(e.family)
        let what = "TCP socket id \(entry.id) (port \(e.srcPort), state \(TcpState.name(Int32(e.state))))"
        func bad(_ r: String) -> RestoreError { .file(pid: ctx.task.pid, id: entry.id, what: what, reason: r) }
        guard e.type == UInt32(SOCK_STREAM.rawValue), fam == AF_INET || fam == AF_INET6 else {
            throw bad("family \(e.family) type \(e.type) is not TCP")
        }
        let state = Int32(e.state)
        guard TcpState.connected.contains(state) || state == TcpState.listen || state == TcpState.close else {
            throw bad("state \(e.state) cannot be restored")
        }
        var stream: (Img_TcpStreamEntry, [UInt8])?
        if TcpState.carried(state, hasPeer: e.dstPort != 0) {
            let all = try ctx.images.readWithPayloads(.tcpStream, id: Int(e.ino), as: Img_TcpStreamEntry.self) { Int($0.inqLen) + Int($0.outqLen) }
            guard all.count == 1 else { throw bad("\(ctx.images.filePath(.tcpStream, Int(e.ino))) holds \(all.count) entries, not one") }
            guard all[0].0.unsqLen <= all[0].0.outqLen else { throw bad("unsent length \(all[0].0.unsqLen) exceeds send queue \(all[0].0.outqLen)") }
            stream = all[0]
        }
        let s = socket(fam, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_TCP))
        guard s >= 0 else { throw SystemCallError(call: "socket(TCP)", errno: errno, context: what) }
        var unsent: [UInt8] = []
        do {
            try SocketOptions.apply(e.opts, to: s, what: what)
            // The queues must fit again: the FORCE variants pass the sysctl caps, as CRIU does.
            if e.opts.soSndbuf > 0 { try TcpRepair.setChecked(s, SOL_SOCKET, 32 /* SO_SNDBUFFORCE */, Int32(bitPattern: e.opts.soSndbuf / 2), "SO_SNDBUFFORCE", what) }
            if e.opts.soRcvbuf > 0 { try TcpRepair.setChecked(s, SOL_SOCKET, 33 /* SO_RCVBUFFORCE */, Int32(bitPattern: e.opts.soRcvbuf / 2), "SO_RCVBUFFORCE", what) }
            if fam == AF_INET6 && e.hasV6Only {
                try TcpRepair.setChecked(s, Int32(IPPROTO_IPV6), IPV6_V6ONLY, e.v6Only ? 1 : 0, "IPV6_V6ONLY", what)
            }
            // A listener shares its port with the connections accepted from it, restored
            // alongside: bind with SO_REUSEADDR, then put the dumped value back.
            try TcpRepair.setChecked(s, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR", what)
            // Repair mode makes bind() take the address even while the listener this
            // connection was accepted from holds it, and connect() send nothing. After
            // SO_REUSEADDR, which would overwrite the forced reuse repair mode sets.
            if stream != nil {
                guard TcpRepair.set(s, TcpRepair.repair, 1) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR)", errno: errno, context: what) }
            }
            let binds = e.srcPort != 0 || e.srcAddr.contains(where: { $0 != 0 })
            // Sockets sharing a port through SO_REUSEPORT, some of which turned it off after
            // binding: each binds with it on, then gets its own value back (as CRIU does).
            if binds && stream == nil && !e.opts.soReuseport { try TcpRepair.setChecked(s, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT", what) }
            // Likewise IP_FREEBIND (the dumped value goes back with ip_opts below).
            if binds { try TcpRepair.setChecked(s, Int32(IPPROTO_IP), InetOptions.ipFreebind, 1, "IP_FREEBIND", what) }
            if binds {
                let a = InetSocket.sockaddrBytes(family: fam, addr: e.srcAddr, port: e.srcPort)
                let rc = a.withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "bind(\(TcpRepair.describe(fam, e.srcAddr, e.srcPort)))", errno: errno, context: what) }
            }
            if state == TcpState.listen {
                guard listen(s, Int32(bitPattern: e.backlog)) == 0 else { throw SystemCallError(call: "listen", errno: errno, context: what) }
            }
            if binds && stream == nil && !e.opts.soReuseport { try TcpRepair.setChecked(s, SOL_SOCKET, SO_REUSEPORT, 0, "SO_REUSEPORT", what) }
            if let (st, bytes) = stream {
                // The queued bytes cost the kernel more than their length (buffer overhead):
                // refilled at the dumped sizes they may not fit, so the buffers are grown
                // meanwhile and put back once full (the send side after the unsent part went
                // out, in finishTcp).
                let grow = { (q: UInt32, dumped: UInt32) in Int32(clamping: max(UInt64(dumped / 2), UInt64(q) * 2 + 65536)) }
                try TcpRepair.setChecked(s, SOL_SOCKET, 32 /* SO_SNDBUFFORCE */, grow(st.outqLen, e.opts.soSndbuf), "SO_SNDBUFFORCE", what)
                try TcpRepair.setChecked(s, SOL_SOCKET, 33 /* SO_RCVBUFFORCE */, grow(st.inqLen, e.opts.soRcvbuf), "SO_RCVBUFFORCE", what)
                unsent = try TcpRepair.rebuild(s, st, bytes, state: state, family: fam, dstAddr: e.dstAddr, dstPort: e.dstPort, what: what)
                if e.opts.soRcvbuf > 0 { try TcpRepair.setChecked(s, SOL_SOCKET, 33 /* SO_RCVBUFFORCE */, Int32(bitPattern: e.opts.soRcvbuf / 2), "SO_RCVBUFFORCE", what) }
            }
            if !e.opts.reuseaddr { try TcpRepair.setChecked(s, SOL_SOCKET, SO_REUSEADDR, 0, "SO_REUSEADDR", what) }
            if e.opts.hasSoBufLock { try TcpRepair.setChecked(s, SOL_SOCKET, SocketOptions.soBufLock, Int32(bitPattern: e.opts.soBufLock), "SO_BUF_LOCK", what) }
            try InetOptions.apply(e, to: s, what: what)
            // Receive side only (checked at dump): a flag, no FIN, so repair mode does not matter.
            // The FINs of a half-closed connection come back in finishTcp, with the shutdown
            // they made; only a receive side shut by the program itself is set here.
            var shut = e.shutdown
            if state != TcpState.established && stream != nil {
                let rd = shut == .read || shut == .both
                shut = rd && !TcpState.receivedFin.contains(state) ? .read : .none
            }
            if let how = InetOptions.shutdownHow(shut), Glibc.shutdown(s, how) != 0 && errno != ENOTCONN {
                throw SystemCallError(call: "shutdown(\(how))", errno: errno, context: what)
            }
            try FileFlags.set(s, e.flags, what: what)
        } catch {
            // Still in repair mode if it got that far: closing sends nothing to the peer.
            close(s)
            throw error
        }
        if let (st, _) = stream {
            let fin = state == TcpState.established ? nil : TcpFins(state: state, family: fam, local: (e.srcAddr, e.srcPort), peer: (e.dstAddr, e.dstPort), stream: st)
            ctx.shared.tcpInRepair.append((fd: s, unsent: unsent, sndbuf: e.opts.soSndbuf, opts: e.opts, what: what, fins: fin))
        }
        return try ctx.install(s, id: entry.id, what: what)
    }
}

/// TCP states as the kernel numbers them (include/net/tcp_states.h).
enum TcpState {
    static let established: Int32 = 1, close: Int32 = 7, listen: Int32 = 10
    static let finWait1: Int32 = 4, finWait2: Int32 = 5, closeWait: Int32 = 8, lastAck: Int32 = 9, closing: Int32 = 11
    /// A connection cryo carries: established, or half or fully closed with its FINs in flight.
    static let connected: Set<Int32> = [established, finWait1, finWait2, closeWait, lastAck, closing]
    // Where the FINs are (CRIU's soccr): ours sent first, ours sent after the peer's, ours
    // acked, the peer's received.
    static let sentFinFirst: Set<Int32> = [finWait1, finWait2, closing]
    // CLOSE here is a closed connection (one with a peer): both FINs exchanged and acked, put
    // back as LAST_ACK plus the peer's ACK, which takes it to CLOSE (soccr's masks).
    static let sentFinSecond: Set<Int32> = [lastAck, close]
    static let sentFinAcked: Set<Int32> = [finWait2, close]
    static let receivedFin: Set<Int32> = [closeWait, lastAck, closing, close]
    /// A socket whose connection cryo carries: `connected`, or CLOSE with a peer address.
    static func carried(_ s: Int32, hasPeer: Bool) -> Bool { connected.contains(s) || (s == close && hasPeer) }
    static func sentFin(_ s: Int32) -> Bool { sentFinFirst.contains(s) || sentFinSecond.contains(s) }
    static let names = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
                        "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"]
    static func name(_ s: Int32) -> String { s > 0 && Int(s) < names.count ? names[Int(s)] : "state \(s)" }
}

/// The fields of struct tcp_info cryo uses, from its raw bytes.
struct TcpInfo: Equatable {
    var state: Int32
    /// TCPI_OPT_* bits: TIMESTAMPS 1, SACK 2, WSCALE 4.
    var options: UInt8
    var sndWscale: UInt8
    var rcvWscale: UInt8
    /// For a listener the kernel reports its accept queue here (tcpi_unacked, tcpi_sacked).
    var listenQueued: UInt32
    var listenBacklog: UInt32
    /// tcpi_segs_in: segments received (a refused connect has 1, its RST).
    var segsIn: UInt32 = 0

    /// Parses the head of struct tcp_info: u8 state, ca_state, retransmits, probes, backoff,
    /// options, then a byte with snd_wscale in the low nibble and rcv_wscale in the high one,
    /// then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked.
    init?(bytes b: [UInt8]) {
        guard b.count >= 32 else { return nil }
        state = Int32(b[0])
        options = b[5]
        sndWscale = b[6] & 0x0f
        rcvWscale = b[6] >> 4
        func u32(_ o: Int) -> UInt32 { UInt32(b[o]) | UInt32(b[o + 1]) << 8 | UInt32(b[o + 2]) << 16 | UInt32(b[o + 3]) << 24 }
        listenQueued = u32(24)
        listenBacklog = u32(28)
        segsIn = b.count >= 144 ? u32(140) : 0
    }
}

/// TCP_REPAIR: reading a connection's state out of the kernel and building it back.
enum TcpRepair {
    // include/uapi/linux/tcp.h
    static let repair: Int32 = 19, repairQueue: Int32 = 20, queueSeq: Int32 = 21, repairOptions: Int32 = 22
    static let timestamp: Int32 = 24, repairWindow: Int32 = 29, info: Int32 = 11, maxseg: Int32 = 2
    static let nodelay: Int32 = 1, cork: Int32 = 3
    static let recvQueue: Int32 = 1, sendQueue: Int32 = 2
    static let optTimestamps: UInt32 = 1, optSack: UInt32 = 2, optWscale: UInt32 = 4
    // TCPOPT_* codes TCP_REPAIR_OPTIONS takes.
    static let tcpoptMaxseg: UInt32 = 2, tcpoptWindow: UInt32 = 3, tcpoptSackPerm: UInt32 = 4, tcpoptTimestamp: UInt32 = 8
    static let siocinq: UInt = 0x541B, siocoutq: UInt = 0x5411, siocoutqnsd: UInt = 0x894B
    static let tcpLevel = Int32(IPPROTO_TCP)

    static func set(_ s: Int32, _ opt: Int32, _ v: Int32) -> Int32 {
        var x = v
        return setsockopt(s, tcpLevel, opt, &x, 4)
    }

    static func setChecked(_ s: Int32, _ level: Int32, _ opt: Int32, _ v: Int32, _ name: String, _ what: String) throws {
        var x = v
        guard setsockopt(s, level, opt, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(\(name))", errno: errno, context: what) }
    }

    static func get(_ s: Int32, _ opt: Int32, _ name: String, _ what: String) throws -> UInt32 {
        var v: UInt32 = 0
        var l = socklen_t(4)
        guard getsockopt(s, tcpLevel, opt, &v, &l) == 0 else { throw SystemCallError(call: "getsockopt(\(name))", errno: errno, context: what) }
        return v
    }

    static func info(_ s: Int32) -> TcpInfo? {
        var b = [UInt8](repeating: 0, count: 256)
        var l = socklen_t(b.count)
        guard b.withUnsafeMutableBytes({ getsockopt(s, tcpLevel, info, $0.baseAddress, &l) }) == 0 else { return nil }
        return TcpInfo(bytes: Array(b.prefix(Int(l))))
    }

    static func describe(_ a: (family: Int32, addr: [UInt32], port: UInt16)) -> String { describe(a.family, a.addr, UInt32(a.port)) }

    static func describe(_ family: Int32, _ addr: [UInt32], _ port: UInt32) -> String {
        let bytes = addr.withUnsafeBytes { Array($0.prefix(family == AF_INET6 ? 16 : 4)) }
        return NetFormat.endpoint(family, bytes, port: port)
    }

    /// Reads an established connection already in repair mode: sequence numbers, both
    /// queues (peeked, nothing consumed), negotiated options, window and timestamp.
    static func take(_ s: Int32, state: Int32, what: String, refuse: (String) -> DumpError) throws -> (Img_TcpStreamEntry, [UInt8]) {
        // The peer may have moved it on between the first look and repair mode.
        guard let ti = info(s) else { throw SystemCallError(call: "getsockopt(TCP_INFO)", errno: errno, context: what) }
        guard ti.state == state else { throw refuse("TCP state became \(TcpState.name(ti.state)) while dumped") }
        // Our FIN, while unacked, counts in both send-queue lengths but holds no byte (soccr).
        let fin: UInt32 = TcpState.sentFin(state) ? 1 : 0
        func ioc(_ req: UInt, _ name: String) throws -> UInt32 {
            var v: Int32 = 0
            guard ck_ioctl(s, req, &v) == 0 else { throw SystemCallError(call: "ioctl(\(name))", errno: errno, context: what) }
            return UInt32(v)
        }
        func seqOf(_ q: Int32) throws -> UInt32 {
            guard set(s, repairQueue, q) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR_QUEUE)", errno: errno, context: what) }
            return try get(s, queueSeq, "TCP_QUEUE_SEQ", what)
        }
        // Repair mode stops nothing the kernel does on its own: ACKs and data from the peer
        // (frozen, but its kernel still sends what it had queued) go on arriving. Without
        // CRIU's network lock, take the state when it holds still: the same lengths and
        // sequence numbers before and after reading both queues.
        var e = Img_TcpStreamEntry()
        var inq: [UInt8] = [], outq: [UInt8] = []
        var stable = false
        for attempt in 0..<200 {
            if attempt > 0 { usleep(2000) }
            func lengths() throws -> (UInt32, UInt32, UInt32, UInt32, UInt32) {
                let (i, o, u) = (try ioc(siocinq, "SIOCINQ"), try ioc(siocoutq, "SIOCOUTQ"), try ioc(siocoutqnsd, "SIOCOUTQNSD"))
                return (i, o >= fin ? o - fin : 0, u >= fin ? u - fin : 0, try seqOf(recvQueue), try seqOf(sendQueue))
            }
            let before = try lengths()
            inq = try peek(s, Int(before.0), what: what + " receive queue", queue: recvQueue)
            outq = try peek(s, Int(before.1), what: what + " send queue", queue: sendQueue)
            let after = try lengths()
            if before == after && inq.count == Int(before.0) && outq.count == Int(before.1) {
                (e.inqLen, e.outqLen, e.unsqLen, e.inqSeq, e.outqSeq) = before
                stable = true
                break
            }
        }
        // Left selecting no queue: with the send queue selected, the kernel would mark data
        // as sent without sending it whenever an ACK opened the window.
        _ = set(s, repairQueue, 0 /* TCP_NO_QUEUE */)
        guard stable else { throw refuse("the connection kept changing for 400 ms while dumped (data or ACKs still arriving)") }

        // In repair mode TCP_MAXSEG reports the clamp negotiated at handshake.
        e.mssClamp = try get(s, maxseg, "TCP_MAXSEG", what)
        e.optMask = UInt32(ti.options)
        e.sndWscale = UInt32(ti.sndWscale)
        e.rcvWscale = UInt32(ti.rcvWscale)
        if e.optMask & optTimestamps != 0 { e.timestamp = try get(s, timestamp, "TCP_TIMESTAMP", what) }
        var w = [UInt32](repeating: 0, count: 5)
        var l = socklen_t(20)
        guard w.withUnsafeMutableBytes({ getsockopt(s, tcpLevel, repairWindow, $0.baseAddress, &l) }) == 0, l == 20 else {
            throw SystemCallError(call: "getsockopt(TCP_REPAIR_WINDOW)", errno: errno, context: what)
        }
        (e.sndWl1, e.sndWnd, e.maxWindow, e.rcvWnd, e.rcvWup) = (w[0], w[1], w[2], w[3], w[4])
        e.nodelay = try get(s, nodelay, "TCP_NODELAY", what) != 0
        e.cork = try get(s, cork, "TCP_CORK", what) != 0
        return (e, inq + outq)
    }

    /// Whether two readings of one connection hold the same sequence numbers and queue
    /// lengths: sequences only grow, so equal ones mean nothing moved in between.
    static func sameCut(_ a: Img_TcpStreamEntry, _ b: Img_TcpStreamEntry) -> Bool {
        a.inqLen == b.inqLen && a.outqLen == b.outqLen && a.unsqLen == b.unsqLen && a.inqSeq == b.inqSeq && a.outqSeq == b.outqSeq
    }

    /// The bytes of `queue` (TCP_RECV_QUEUE or TCP_SEND_QUEUE), expected to be `len`; fewer
    /// when it changed meanwhile (the caller compares). The send queue comes whole whatever
    /// the length asked, so the buffer has room for more.
    static func peek(_ s: Int32, _ len: Int, what: String, queue: Int32) throws -> [UInt8] {
        guard set(s, repairQueue, queue) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR_QUEUE)", errno: errno, context: what) }
        guard len > 0 else { return [] }
        var buf = [UInt8](repeating: 0, count: len + 65536)
        let n = buf.withUnsafeMutableBytes { recv(s, $0.baseAddress, $0.count, Int32(MSG_PEEK | MSG_DONTWAIT)) }
        if n < 0 && (errno == EAGAIN || errno == EFAULT) { return [] }
        guard n >= 0 else { throw SystemCallError(call: "recv(MSG_PEEK)", errno: errno, context: what) }
        return Array(buf.prefix(n))
    }

    /// Builds the connection on `s` (in repair mode, bound): sequence numbers, a connect that
    /// sends nothing, options, window, timestamp, the receive queue and the part of the send
    /// queue already sent. Returns the bytes never sent: they go out with a plain send once
    /// repair is off (the peer must know nothing of them yet).
    static func rebuild(_ s: Int32, _ e: Img_TcpStreamEntry, _ bytes: [UInt8], state: Int32, family: Int32, dstAddr: [UInt32], dstPort: UInt32, what: String) throws -> [UInt8] {
        guard bytes.count == Int(e.inqLen) + Int(e.outqLen) else {
            throw SystemCallError(call: "tcp-stream image has \(bytes.count) bytes, not \(e.inqLen)+\(e.outqLen)", errno: EINVAL, context: what)
        }
        func seq(_ q: Int32, _ v: UInt32, _ name: String) throws {
            guard set(s, repairQueue, q) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR_QUEUE \(name))", errno: errno, context: what) }
            guard set(s, queueSeq, Int32(bitPattern: v)) == 0 else { throw SystemCallError(call: "setsockopt(TCP_QUEUE_SEQ \(name))", errno: errno, context: what) }
        }
        // The queues are refilled below, each advancing its sequence by its length. The FINs
        // of a half-closed connection come back in finishTcp.
        let (inqSeq, outqSeq) = finlessSeqs(e, state: state)
        try seq(recvQueue, inqSeq &- e.inqLen, "recv")
        try seq(sendQueue, outqSeq &- e.outqLen, "send")
        let a = InetSocket.sockaddrBytes(family: family, addr: dstAddr, port: dstPort)
        let rc = a.withUnsafeBytes { connect(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
        guard rc == 0 else { throw SystemCallError(call: "connect(\(describe(family, dstAddr, dstPort))) in repair mode", errno: errno, context: what) }
        var opts: [UInt32] = [tcpoptMaxseg, e.mssClamp]
        if e.optMask & optWscale != 0 { opts += [tcpoptWindow, e.sndWscale + (e.rcvWscale << 16)] }
        if e.optMask & optTimestamps != 0 { opts += [tcpoptTimestamp, 0] }
        if e.optMask & optSack != 0 { opts += [tcpoptSackPerm, 0] }
        guard opts.withUnsafeBytes({ setsockopt(s, tcpLevel, repairOptions, $0.baseAddress, socklen_t($0.count)) }) == 0 else {
            throw SystemCallError(call: "setsockopt(TCP_REPAIR_OPTIONS)", errno: errno, context: what)
        }
        if e.optMask & optTimestamps != 0 {
            guard set(s, timestamp, Int32(bitPattern: e.timestamp)) == 0 else { throw SystemCallError(call: "setsockopt(TCP_TIMESTAMP)", errno: errno, context: what) }
        }
        let inq = Array(bytes[0..<Int(e.inqLen)])
        let outq = Array(bytes[Int(e.inqLen)...])
        let sent = Int(e.outqLen - e.unsqLen)
        guard set(s, repairQueue, recvQueue) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR_QUEUE recv)", errno: errno, context: what) }
        try fill(s, inq, what: what + " receive queue")
        guard set(s, repairQueue, sendQueue) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR_QUEUE send)", errno: errno, context: what) }
        try fill(s, Array(outq[0..<sent]), what: what + " send queue")
        // After the receive queue: the kernel checks rcv_wup against rcv_nxt, which only
        // the refill brings back to where it was.
        if e.hasSndWnd {
            // rcv_wup as it stood before the peer's FIN, which finishTcp delivers again.
            let fin: UInt32 = TcpState.receivedFin.contains(state) ? 1 : 0
            let w: [UInt32] = [e.sndWl1, e.sndWnd, e.maxWindow, e.rcvWnd &+ fin, e.rcvWup &- fin]
            guard w.withUnsafeBytes({ setsockopt(s, tcpLevel, repairWindow, $0.baseAddress, 20) }) == 0 else {
                throw SystemCallError(call: "setsockopt(TCP_REPAIR_WINDOW)", errno: errno, context: what)
            }
        }
        if e.nodelay { _ = set(s, nodelay, 1) }
        if e.cork { _ = set(s, cork, 1) }
        return Array(outq[sent...])
    }

    /// rcv_nxt and write_seq as they stand without the FINs a half-closed connection counted
    /// (each FIN takes a sequence number).
    static func finlessSeqs(_ e: Img_TcpStreamEntry, state: Int32) -> (inq: UInt32, outq: UInt32) {
        (TcpState.receivedFin.contains(state) ? e.inqSeq &- 1 : e.inqSeq, TcpState.sentFin(state) ? e.outqSeq &- 1 : e.outqSeq)
    }

    /// Sends `data` into the queue repair mode selected. The kernel takes each call as one
    /// buffer and refuses ones it cannot allocate: halve the chunk and go on.
    static func fill(_ s: Int32, _ data: [UInt8], what: String) throws {
        var off = 0
        var chunk = max(data.count, 1)
        while off < data.count {
            let n = data.withUnsafeBytes { send(s, $0.baseAddress! + off, min(chunk, data.count - off), Int32(MSG_DONTWAIT)) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == ENOMEM || errno == EAGAIN) && chunk > 1024 { chunk /= 2; continue }
            guard n > 0 else { throw SystemCallError(call: "send (\(data.count - off) of \(data.count) bytes left)", errno: n < 0 ? errno : EIO, context: what) }
            off += n
        }
    }
}
