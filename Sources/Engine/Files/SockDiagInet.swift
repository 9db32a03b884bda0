import Glibc

/// What inet_diag tells about one TCP or UDP socket that no getsockopt shows.
public struct InetDiag: Sendable, Equatable {
    public var state: UInt8 = 0
    public var ino: UInt32 = 0
    /// RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
    public var shutdown: UInt8 = 0
}

extension SockDiag {
    /// inet_diag_req_v2 asking for every socket of `family`/`proto` (a dump: the kernel looks
    /// a single socket up by addresses, which an unbound one does not have). Raw sockets are
    /// asked as IPPROTO_RAW, with their own protocol (255: any) in the next byte.
    public static func inetDumpRequest(family: UInt8, proto: UInt8, seq: UInt32, rawProtocol: UInt8 = 0) -> [UInt8] {
        var b: [UInt8] = []
        b.putU32(16 + 56); b.append(UInt8(sockDiagByFamily & 0xff)); b.append(UInt8(sockDiagByFamily >> 8))
        b.append(0x01); b.append(0x03)  // NLM_F_REQUEST | NLM_F_DUMP (0x300)
        b.putU32(seq); b.putU32(0)
        b.append(family); b.append(proto); b.append(0); b.append(rawProtocol)
        b.putU32(0xffff_ffff)  // every state
        b += [UInt8](repeating: 0, count: 40)  // sockid: ports, addresses, interface
        b.putU32(0xffff_ffff); b.putU32(0xffff_ffff)  // no cookie
        return b
    }

    /// Parses the messages of one reply buffer; returns the sockets found and whether the dump
    /// is done (NLMSG_DONE).
    public static func parseInet(_ b: [UInt8]) throws -> (sockets: [InetDiag], done: Bool) {
        var out: [InetDiag] = []
        let done = try eachDumpMessage(b, minLength: 16 + 72) { at, len in
            var d = InetDiag()
            d.state = b[at + 17]
            d.ino = b.u32(at: at + 16 + 68)
            var a = at + 16 + 72
            while a + 4 <= at + len {
                let alen = Int(UInt16(b[a]) | UInt16(b[a + 1]) << 8), atype = UInt16(b[a + 2]) | UInt16(b[a + 3]) << 8
                guard alen >= 4, a + alen <= at + len else { throw SockDiagError.malformed("attribute \(atype) of length \(alen) overruns its message") }
                if atype == 8 /* INET_DIAG_SHUTDOWN */ && alen >= 5 { d.shutdown = b[a + 4] }
                a += (alen + 3) & ~3
            }
            out.append(d)
        }
        return (out, done)
    }

    /// The inet_diag view of the socket with inode `ino`, nil when the kernel lists none.
    public static func inet(family: Int32, proto: Int32, ino: UInt32, rawProtocol: UInt8 = 0) throws -> InetDiag? {
        let s = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard s >= 0 else { throw SystemCallError(call: "socket(NETLINK_SOCK_DIAG)", errno: errno) }
        defer { close(s) }
        let req = inetDumpRequest(family: UInt8(family), proto: UInt8(proto), seq: ino, rawProtocol: rawProtocol)
        let sent = req.withUnsafeBytes { send(s, $0.baseAddress, $0.count, 0) }
        guard sent == req.count else { throw SystemCallError(call: "sendto(inet_diag)", errno: errno, context: "socket inode \(ino)") }
        var found: InetDiag?
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(s, &buf, buf.count, 0)
            guard n > 0 else { throw SystemCallError(call: "recv(inet_diag)", errno: errno, context: "socket inode \(ino)") }
            let (socks, done) = try parseInet(Array(buf[0..<n]))
            if found == nil { found = socks.first { $0.ino == ino } }
            if done { return found }
        }
    }
}
