import CKernel
import Glibc

/// What NETLINK_SOCK_DIAG tells about one unix socket: the only place the kernel shows a unix
/// socket's peer and its pending connections.
public struct UnixDiag: Sendable, Equatable {
    public var type: UInt8 = 0
    public var state: UInt8 = 0
    public var ino: UInt32 = 0
    /// Bound address without the family (abstract names start with a 0 byte); empty: unbound.
    public var name: [UInt8] = []
    public var peer: UInt32 = 0
    /// Inodes of connections waiting in a listener's queue.
    public var icons: [UInt32] = []
    /// Listener: pending connections and backlog; otherwise bytes (or first packet) queued and
    /// bytes in flight to the peer.
    public var rqueue: UInt32 = 0
    public var wqueue: UInt32 = 0
    /// RCV_SHUTDOWN 1 | SEND_SHUTDOWN 2
    public var shutdown: UInt8 = 0
    public var vfsIno: UInt32?

    public init() {}
}

public enum SockDiagError: Error, CustomStringConvertible {
    case malformed(String)
    case kernel(ino: UInt32, errno: Int32)
    public var description: String {
        switch self {
        case .malformed(let r): return "sock_diag reply: \(r)"
        case .kernel(let ino, let e): return "sock_diag for socket inode \(ino): \(String(cString: strerror(e)))"
        }
    }
}

/// sock_diag answers for the network namespace of the socket that asks: cryo's own. Tasks in
/// another network namespace would need the query made from inside it (setns), which cryo
/// does not do yet: their unix sockets are not found and the dump fails naming the fd.
public enum SockDiag {
    static let sockDiagByFamily: UInt16 = 20

    /// Walks the messages of one reply buffer of a sock_diag dump, handing each
    /// SOCK_DIAG_BY_FAMILY message (its offset and length, at least `minLength`) to `body`;
    /// a kernel error is thrown. Returns whether the dump is done (NLMSG_DONE).
    static func eachDumpMessage(_ b: [UInt8], minLength: Int, _ body: (_ at: Int, _ len: Int) throws -> Void) throws -> Bool {
        var at = 0
        while at + 16 <= b.count {
            let len = Int(b.u32(at: at)), type = UInt16(b[at + 4]) | UInt16(b[at + 5]) << 8
            guard len >= 16, at + len <= b.count else { throw SockDiagError.malformed("message of length \(len) at \(at) of \(b.count) bytes") }
            if type == 3 /* NLMSG_DONE */ { return true }
            if type == 2 /* NLMSG_ERROR */ {
                guard len >= 20 else { throw SockDiagError.malformed("short error message") }
                throw SockDiagError.kernel(ino: 0, errno: -Int32(bitPattern: b.u32(at: at + 16)))
            }
            guard type == sockDiagByFamily, len >= minLength else { throw SockDiagError.malformed("message type \(type), length \(len)") }
            try body(at, len)
            at += (len + 3) & ~3
        }
        return false
    }
    static let showAll: UInt32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x40  // NAME VFS PEER ICONS RQLEN SHUTDOWN

    /// The request for one unix socket, by inode (nlmsghdr + unix_diag_req).
    public static func unixRequest(ino: UInt32, seq: UInt32) -> [UInt8] {
        var b: [UInt8] = []
        b.putU32(16 + 24); b.append(UInt8(sockDiagByFamily & 0xff)); b.append(UInt8(sockDiagByFamily >> 8))
        b.append(1); b.append(0)  // NLM_F_REQUEST
        b.putU32(seq); b.putU32(0)
        b.append(UInt8(AF_UNIX)); b.append(0); b.append(0); b.append(0)
        b.putU32(0xffff_ffff)  // every state
        b.putU32(ino)
        b.putU32(showAll)
        b.putU32(0xffff_ffff); b.putU32(0xffff_ffff)  // no cookie
        return b
    }

    /// Parses one reply message (nlmsghdr, unix_diag_msg, attributes).
    public static func parseUnix(_ b: [UInt8], ino: UInt32) throws -> UnixDiag {
        guard b.count >= 16 else { throw SockDiagError.malformed("\(b.count) bytes, no netlink header") }
        let len = Int(b.u32(at: 0)), type = UInt16(b[4]) | UInt16(b[5]) << 8
        guard len >= 16, len <= b.count else { throw SockDiagError.malformed("length \(len) of \(b.count) bytes") }
        if type == 2 /* NLMSG_ERROR */ {
            guard len >= 20 else { throw SockDiagError.malformed("short error message") }
            throw SockDiagError.kernel(ino: ino, errno: -Int32(bitPattern: b.u32(at: 16)))
        }
        guard type == sockDiagByFamily, len >= 32 else { throw SockDiagError.malformed("message type \(type), length \(len)") }
        var d = UnixDiag()
        d.type = b[17]; d.state = b[18]
        d.ino = b.u32(at: 20)
        var at = 32
        while at + 4 <= len {
            let alen = Int(UInt16(b[at]) | UInt16(b[at + 1]) << 8), atype = UInt16(b[at + 2]) | UInt16(b[at + 3]) << 8
            guard alen >= 4, at + alen <= len else { throw SockDiagError.malformed("attribute \(atype) of length \(alen) at \(at) overruns \(len)") }
            let p = Array(b[(at + 4)..<(at + alen)])
            func need(_ n: Int) throws { if p.count < n { throw SockDiagError.malformed("attribute \(atype): \(p.count) bytes, need \(n)") } }
            switch atype {
            case 0: d.name = p
            case 1: try need(8); d.vfsIno = p.u32(at: 0)
            case 2: try need(4); d.peer = p.u32(at: 0)
            case 3: d.icons = stride(from: 0, to: p.count - p.count % 4, by: 4).map { p.u32(at: $0) }
            case 4: try need(8); d.rqueue = p.u32(at: 0); d.wqueue = p.u32(at: 4)
            case 6: try need(1); d.shutdown = p[0]
            default: break
            }
            at += (alen + 3) & ~3
        }
        guard d.ino == ino else { throw SockDiagError.malformed("reply for inode \(d.ino), asked for \(ino)") }
        return d
    }

    public static func unix(ino: UInt32) throws -> UnixDiag {
        let s = socket(AF_NETLINK, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 4 /* NETLINK_SOCK_DIAG */)
        guard s >= 0 else { throw SystemCallError(call: "socket(NETLINK_SOCK_DIAG)", errno: errno) }
        defer { close(s) }
        let req = unixRequest(ino: ino, seq: ino)
        // An unconnected netlink socket sends to the kernel (port 0).
        let sent = req.withUnsafeBytes { send(s, $0.baseAddress, $0.count, 0) }
        guard sent == req.count else { throw SystemCallError(call: "sendto(sock_diag)", errno: errno, context: "socket inode \(ino)") }
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = recv(s, &buf, buf.count, 0)
        guard n > 0 else { throw SystemCallError(call: "recv(sock_diag)", errno: errno, context: "socket inode \(ino)") }
        return try parseUnix(Array(buf[0..<n]), ino: ino)
    }

    /// "UNIX", "UDP", "TCP", "UDPv6"...: sockfs names a socket's protocol in an xattr.
    static func protocolName(pid: Int32, fd: Int32) -> String? {
        var buf = [CChar](repeating: 0, count: 64)
        let path = "/proc/\(pid)/fd/\(fd)"
        let n = path.withCString { p in "system.sockprotoname".withCString { k in
            buf.withUnsafeMutableBytes { ck_syscall6(SyscallNumber.getxattr.rawValue, Int(bitPattern: p), Int(bitPattern: k), Int(bitPattern: $0.baseAddress!), 63, 0, 0) } } }
        guard n > 0 else { return nil }
        return String(decoding: buf[0..<n].prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
