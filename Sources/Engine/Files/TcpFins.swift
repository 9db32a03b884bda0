import Glibc

/// The FINs of a half-closed connection (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING),
/// put back as CRIU's soccr does once the connection is rebuilt in repair mode: ours by
/// shutdown(SHUT_WR), taken as already sent when the peer had acked it; the peer's, and the
/// peer's ACK of ours, by a segment cryo makes from the peer's address to the socket, sent
/// through a raw socket that carries the network lock's mark. The kernel walks the state
/// machine itself, so the socket ends where it was, sequence numbers included.
struct TcpFins {
    let state: Int32
    let family: Int32
    let local: (addr: [UInt32], port: UInt32)
    let peer: (addr: [UInt32], port: UInt32)
    let stream: Img_TcpStreamEntry

    static let ack: UInt8 = 0x10, fin: UInt8 = 0x01
    static let lockMark: Int32 = 0xC114

    /// rcv_nxt before the peer's FIN (that FIN's sequence number), and snd_una as rebuilt.
    var inqSeq: UInt32 { TcpRepair.finlessSeqs(stream, state: state).inq }
    var sndUna: UInt32 { TcpRepair.finlessSeqs(stream, state: state).outq &- stream.outqLen }

    /// While every connection is in repair mode. With bytes never sent ahead of our FIN
    /// (`unsent`), only the peer's FIN of a LAST_ACK one: ours goes behind those bytes once
    /// repair is off (`afterUnsent`).
    func restore(_ s: Int32, unsent: Bool, what: String) throws {
        if unsent {
            if state == TcpState.lastAck { try segment(seq: inqSeq, ack: sndUna, flags: TcpFins.ack | TcpFins.fin, what: what) }
            return
        }
        if TcpState.sentFinFirst.contains(state) { try finInSendQueue(s, acked: TcpState.sentFinAcked.contains(state), what: what) }
        if TcpState.receivedFin.contains(state) {
            try segment(seq: inqSeq, ack: sndUna, flags: TcpFins.ack | TcpFins.fin, what: what)
            // Delivered through loopback's backlog, maybe later than sendto returns: the next
            // step (our FIN) must find the state the peer's FIN makes.
            try awaitState(s, TcpState.sentFinFirst.contains(state) ? TcpState.closing : TcpState.closeWait, what: what)
        }
        // Acked (CLOSE): counted as sent, so the peer's ACK below may ack it (soccr does the same).
        if TcpState.sentFinSecond.contains(state) { try finInSendQueue(s, acked: TcpState.sentFinAcked.contains(state), what: what) }
        // The peer's ACK of our FIN, one past it.
        // Its sequence number is past the peer's FIN when that came first (CLOSE): one at the FIN
        // is taken for an old duplicate once the socket has acked the FIN.
        if TcpState.sentFinAcked.contains(state) {
            try segment(seq: inqSeq &+ (TcpState.receivedFin.contains(state) ? 1 : 0), ack: sndUna &+ 1, flags: TcpFins.ack, what: what)
        }
        try check(s, what: what)
    }

    /// Repair off and the never-sent bytes queued again (as CRIU does): our FIN behind them,
    /// and for CLOSING the peer's FIN after ours, in repair mode for a moment again.
    func afterUnsent(_ s: Int32, what: String) throws {
        guard Glibc.shutdown(s, Int32(SHUT_WR)) == 0 else { throw SystemCallError(call: "shutdown(SHUT_WR)", errno: errno, context: what) }
        if state == TcpState.closing {
            guard TcpRepair.set(s, TcpRepair.repair, 1) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR on)", errno: errno, context: what) }
            try segment(seq: inqSeq, ack: sndUna, flags: TcpFins.ack | TcpFins.fin, what: what)
            guard TcpRepair.set(s, TcpRepair.repair, 0) == 0 else { throw SystemCallError(call: "setsockopt(TCP_REPAIR off)", errno: errno, context: what) }
        }
        try check(s, what: what)
    }

    private func check(_ s: Int32, what: String) throws {
        try awaitState(s, state, what: what)
        // A closed connection whose TIME_WAIT is still in this namespace (restored on the same
        // host within a minute of its close): the TIME_WAIT may take cryo's segments and answer
        // with a reset, which ends the connection as reset, not closed. Told, not restored so.
        guard state == TcpState.close else { return }
        var err: Int32 = 0
        var l = socklen_t(4)
        if getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &l) == 0 && err != 0 {
            throw SystemCallError(call: "restoring a closed connection: it was reset (\(String(cString: strerror(err)))), likely by its own TIME_WAIT still in this network namespace; restore it after that expires (60 s) or into a network namespace of its own", errno: err, context: what)
        }
    }

    /// Until the socket is in `want`, for at most a second: a segment cryo sent goes through
    /// loopback's backlog, which a loaded machine may process after sendto has returned.
    private func awaitState(_ s: Int32, _ want: Int32, what: String) throws {
        for _ in 0..<1000 {
            if TcpRepair.info(s)?.state == want { return }
            usleep(1000)
        }
        throw SystemCallError(call: "restoring the FINs of a \(TcpState.name(state)) connection: it is \(TcpState.name(TcpRepair.info(s)?.state ?? -1)), not \(TcpState.name(want))", errno: EPROTO, context: what)
    }

    /// Our FIN in the send queue; with TCP_SEND_QUEUE selected it counts as sent.
    private func finInSendQueue(_ s: Int32, acked: Bool, what: String) throws {
        if acked && TcpRepair.set(s, TcpRepair.repairQueue, TcpRepair.sendQueue) != 0 {
            throw SystemCallError(call: "setsockopt(TCP_REPAIR_QUEUE send)", errno: errno, context: what)
        }
        let rc = Glibc.shutdown(s, Int32(SHUT_WR))
        let e = errno
        if acked { _ = TcpRepair.set(s, TcpRepair.repairQueue, 0) }
        guard rc == 0 else { throw SystemCallError(call: "shutdown(SHUT_WR) in repair mode", errno: e, context: what) }
    }

    private func bytes(_ a: [UInt32], v6: Bool) -> [UInt8] {
        var b: [UInt8] = []
        for w in a.prefix(v6 ? 4 : 1) { withUnsafeBytes(of: w) { b += $0 } }
        return b
    }

    /// One segment from the peer to the socket: a 20-byte TCP header, no options, no data.
    private func segment(seq: UInt32, ack: UInt32, flags: UInt8, what: String) throws {
        var v6 = family == AF_INET6
        var src = bytes(peer.addr, v6: v6), dst = bytes(local.addr, v6: v6)
        // An IPv4 peer of a dual-stack socket: the segment is IPv4.
        let mapped: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        if v6 && Array(src.prefix(12)) == mapped && Array(dst.prefix(12)) == mapped {
            v6 = false
            src = Array(src.suffix(4)); dst = Array(dst.suffix(4))
        }
        let window = UInt16(clamping: stream.sndWnd >> min(stream.sndWscale, 14))
        var tcp = [UInt8](repeating: 0, count: 20)
        func put16(_ o: Int, _ v: UInt16) { tcp[o] = UInt8(v >> 8); tcp[o + 1] = UInt8(v & 0xff) }
        func put32(_ o: Int, _ v: UInt32) { put16(o, UInt16(v >> 16)); put16(o + 2, UInt16(v & 0xffff)) }
        put16(0, UInt16(peer.port)); put16(2, UInt16(local.port))
        put32(4, seq); put32(8, ack)
        tcp[12] = 5 << 4
        tcp[13] = flags
        put16(14, window)
        let pseudo = src + dst + (v6 ? [0, 0, 0, 20, 0, 0, 0, 6] : [0, 6, 0, 20])
        put16(16, TcpFins.checksum(pseudo + tcp))
        let packet: [UInt8]
        if v6 {
            packet = [0x60, 0, 0, 0, 0, 20, 6, 64] + src + dst + tcp
        } else {
            // Total length and header checksum are the kernel's (IP_HDRINCL).
            packet = [0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0] + src + dst + tcp
        }
        let raw = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
        guard raw >= 0 else { throw SystemCallError(call: "socket(SOCK_RAW) for a TCP segment", errno: errno, context: what) }
        defer { close(raw) }
        var mark = TcpFins.lockMark
        guard setsockopt(raw, SOL_SOCKET, 36 /* SO_MARK */, &mark, 4) == 0 else { throw SystemCallError(call: "setsockopt(SO_MARK)", errno: errno, context: what) }
        var to = sockaddr_storage()
        let len: socklen_t
        if v6 {
            len = socklen_t(MemoryLayout<sockaddr_in6>.size)
            withUnsafeMutableBytes(of: &to) { b in
                b.storeBytes(of: sa_family_t(AF_INET6), toByteOffset: 0, as: sa_family_t.self)
                for (i, x) in dst.enumerated() { b[8 + i] = x }
            }
        } else {
            len = socklen_t(MemoryLayout<sockaddr_in>.size)
            withUnsafeMutableBytes(of: &to) { b in
                b.storeBytes(of: sa_family_t(AF_INET), toByteOffset: 0, as: sa_family_t.self)
                for (i, x) in dst.enumerated() { b[4 + i] = x }
            }
        }
        let n = packet.withUnsafeBytes { p in
            withUnsafePointer(to: &to) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(raw, p.baseAddress, p.count, 0, $0, len) } }
        }
        guard n == packet.count else { throw SystemCallError(call: "sendto (a TCP segment from the peer)", errno: errno, context: what) }
    }

    /// The Internet checksum (RFC 1071).
    static func checksum(_ b: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var i = 0
        while i + 1 < b.count { sum += UInt32(b[i]) << 8 | UInt32(b[i + 1]); i += 2 }
        if i < b.count { sum += UInt32(b[i]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
