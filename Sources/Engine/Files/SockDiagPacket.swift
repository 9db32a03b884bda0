import Glibc

/// What packet_diag tells about one packet socket that getsockopt does not: the bound
/// interface, PACKET_COPY_THRESH, memberships with their counts, rings and fanout.
public struct PacketDiag: Sendable, Equatable {
    public struct Membership: Sendable, Equatable {
        public var ifindex: UInt32, count: UInt32, type: UInt16
        public var addr: [UInt8]
    }
    public var type: UInt8 = 0
    /// Host order, as the kernel shows it.
    public var num: UInt16 = 0
    public var ino: UInt32 = 0
    public var ifindex: UInt32 = 0, version: UInt32 = 0, reserve: UInt32 = 0, copyThresh: UInt32 = 0, tstamp: UInt32 = 0
    /// PDI_RUNNING 1, AUXDATA 2, ORIGDEV 4, VNETHDR 8, LOSS 0x10
    public var flags: UInt32 = 0
    public var memberships: [Membership] = []
    public var rxRing = false, txRing = false
    public var fanout: UInt32?
}

extension SockDiag {
    /// packet_diag_req for every packet socket (the kernel answers only dumps), showing
    /// INFO, MCLIST, RING_CFG and FANOUT.
    public static func packetDumpRequest(seq: UInt32) -> [UInt8] {
        var b: [UInt8] = []
        b.putU32(16 + 20); b.append(UInt8(sockDiagByFamily & 0xff)); b.append(UInt8(sockDiagByFamily >> 8))
        b.append(0x01); b.append(0x03)  // NLM_F_REQUEST | NLM_F_DUMP
        b.putU32(seq); b.putU32(0)
        b.append(UInt8(AF_PACKET)); b.append(0); b.append(0); b.append(0)
        b.putU32(0)  // any inode
        b.putU32(0x1 | 0x2 | 0x4 | 0x8)
        b.putU32(0xffff_ffff); b.putU32(0xffff_ffff)
        return b
    }

    public static func parsePacket(_ b: [UInt8]) throws -> (sockets: [PacketDiag], done: Bool) {
        var out: [PacketDiag] = []
        let done = try eachDumpMessage(b, minLength: 32) { at, len in
            var d = PacketDiag()
            d.type = b[at + 17]
            d.num = UInt16(b[at + 18]) | UInt16(b[at + 19]) << 8
            d.ino = b.u32(at: at + 20)
            var a = at + 32
            while a + 4 <= at + len {
                let alen = Int(UInt16(b[a]) | UInt16(b[a + 1]) << 8), atype = UInt16(b[a + 2]) | UInt16(b[a + 3]) << 8
                guard alen >= 4, a + alen <= at + len else { throw SockDiagError.malformed("attribute \(atype) of length \(alen) overruns its message") }
                let p = Array(b[(a + 4)..<(a + alen)])
                switch atype {
                case 0:
                    guard p.count >= 24 else { throw SockDiagError.malformed("PACKET_DIAG_INFO of \(p.count) bytes") }
                    (d.ifindex, d.version, d.reserve) = (p.u32(at: 0), p.u32(at: 4), p.u32(at: 8))
                    (d.copyThresh, d.tstamp, d.flags) = (p.u32(at: 12), p.u32(at: 16), p.u32(at: 20))
                case 1:
                    // struct packet_diag_mclist: index, count, u16 type, u16 alen, addr[32]
                    for m in stride(from: 0, to: p.count - p.count % 44, by: 44) {
                        let alen = Int(UInt16(p[m + 10]) | UInt16(p[m + 11]) << 8)
                        guard alen <= 32 else { throw SockDiagError.malformed("membership address of \(alen) bytes") }
                        d.memberships.append(.init(ifindex: p.u32(at: m), count: p.u32(at: m + 4), type: UInt16(p[m + 8]) | UInt16(p[m + 9]) << 8,
                                                   addr: Array(p[(m + 12)..<(m + 12 + alen)])))
                    }
                case 2: d.rxRing = true
                case 3: d.txRing = true
                case 4:
                    guard p.count >= 4 else { throw SockDiagError.malformed("PACKET_DIAG_FANOUT of \(p.count) bytes") }
                    d.fanout = p.u32(at: 0)
                default: break
                }
                a += (alen + 3) & ~3
            }
            out.append(d)
        }
        return (out, done)
    }

    /// The packet socket with inode `ino` in the calling thread's network namespace, nil when
    /// the kernel lists none.
    public static func packet(ino: UInt32) throws -> PacketDiag? {
        let s = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard s >= 0 else { throw SystemCallError(call: "socket(NETLINK_SOCK_DIAG)", errno: errno) }
        defer { close(s) }
        let req = packetDumpRequest(seq: ino)
        let sent = req.withUnsafeBytes { send(s, $0.baseAddress, $0.count, 0) }
        guard sent == req.count else { throw SystemCallError(call: "sendto(packet_diag)", errno: errno, context: "socket inode \(ino)") }
        var found: PacketDiag?
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(s, &buf, buf.count, 0)
            guard n > 0 else { throw SystemCallError(call: "recv(packet_diag)", errno: errno, context: "socket inode \(ino)") }
            let (socks, done) = try parsePacket(Array(buf[0..<n]))
            if found == nil { found = socks.first { $0.ino == ino } }
            if done { return found }
        }
    }
}
