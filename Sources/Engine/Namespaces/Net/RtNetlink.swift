import Glibc

/// One netlink attribute: its type (flags masked off) and payload.
struct NlAttr {
    var type: UInt16
    var data: [UInt8]

    static let nested: UInt16 = 0x8000
    static let byteOrder: UInt16 = 0x4000

    /// The attributes in `b` from `from` to the end (or `to`), skipping malformed tails.
    static func parse(_ b: [UInt8], from: Int, to: Int? = nil) -> [NlAttr] {
        var out: [NlAttr] = []
        var at = from
        let end = min(to ?? b.count, b.count)
        while at + 4 <= end {
            let len = Int(b.u16(at: at)), type = b.u16(at: at + 2) & ~(nested | byteOrder)
            guard len >= 4, at + len <= end else { break }
            out.append(NlAttr(type: type, data: Array(b[(at + 4)..<(at + len)])))
            at += (len + 3) & ~3
        }
        return out
    }

    static func put(_ b: inout [UInt8], _ type: UInt16, _ data: [UInt8]) {
        b.putU16(UInt16(4 + data.count)); b.putU16(type)
        b += data
        while b.count % 4 != 0 { b.append(0) }
    }

    static func put(_ b: inout [UInt8], _ type: UInt16, string s: String) { put(&b, type, Array(s.utf8) + [0]) }
    static func put(_ b: inout [UInt8], _ type: UInt16, u32 v: UInt32) { var d: [UInt8] = []; d.putU32(v); put(&b, type, d) }

    var u32: UInt32? { data.count >= 4 ? data.u32(at: 0) : nil }
    var string: String { String(decoding: data.prefix { $0 != 0 }, as: UTF8.self) }
}

extension Array where Element == UInt8 {
    mutating func putU16(_ v: UInt16) { append(UInt8(v & 0xff)); append(UInt8(v >> 8)) }
    func attr(_ attrs: [NlAttr], _ type: UInt16) -> NlAttr? { attrs.first { $0.type == type } }
}

public struct NetlinkError: Error, CustomStringConvertible, Sendable {
    public let what: String
    public let errno: Int32
    public var description: String { "\(what): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// A NETLINK_ROUTE socket. It speaks to the network namespace it was created in, whatever
/// namespace the thread that uses it is in later: that is how cryo reaches two at once.
final class RtNetlink {
    // linux/rtnetlink.h
    static let newLink: UInt16 = 16, delLink: UInt16 = 17, getLink: UInt16 = 18, setLink: UInt16 = 19
    static let newAddr: UInt16 = 20, getAddr: UInt16 = 22
    static let newRoute: UInt16 = 24, getRoute: UInt16 = 26
    static let getRule: UInt16 = 34
    static let fRequest: UInt16 = 1, fAck: UInt16 = 4, fDump: UInt16 = 0x300, fExcl: UInt16 = 0x200, fCreate: UInt16 = 0x400
    static let nlmsgError: UInt16 = 2, nlmsgDone: UInt16 = 3

    let fd: Int32
    var seq: UInt32 = 1

    init() throws {
        fd = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0 /* NETLINK_ROUTE */)
        guard fd >= 0 else { throw NetlinkError(what: "socket(NETLINK_ROUTE)", errno: errno) }
        // Strict checking makes the kernel honour the filters of dump requests.
        var one: Int32 = 1
        _ = setsockopt(fd, 270 /* SOL_NETLINK */, 12 /* NETLINK_GET_STRICT_CHK */, &one, 4)
    }

    deinit { close(fd) }

    /// A whole message: header, then `body`.
    static func message(type: UInt16, flags: UInt16, seq: UInt32, body: [UInt8]) -> [UInt8] {
        var b: [UInt8] = []
        b.putU32(UInt32(16 + body.count)); b.putU16(type); b.putU16(flags)
        b.putU32(seq); b.putU32(0)
        return b + body
    }

    /// Splits a buffer into whole messages (each with its header).
    static func split(_ b: [UInt8]) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        var at = 0
        while at + 16 <= b.count {
            let len = Int(b.u32(at: at))
            guard len >= 16, at + len <= b.count else { throw NetlinkError(what: "netlink message of length \(len) at \(at) of \(b.count) bytes", errno: EBADMSG) }
            out.append(Array(b[at..<(at + len)]))
            at += (len + 3) & ~3
        }
        return out
    }

    private func sendRaw(_ m: [UInt8], _ what: String) throws {
        let n = m.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
        guard n == m.count else { throw NetlinkError(what: what + ": send", errno: n < 0 ? errno : EIO) }
    }

    private func receive(_ what: String) throws -> [[UInt8]] {
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw NetlinkError(what: what + ": recv", errno: n < 0 ? errno : EIO) }
            return try Self.split(Array(buf[0..<n]))
        }
    }

    /// Every message a dump request returns, headers included, in the kernel's order.
    func dump(type: UInt16, body: [UInt8], what: String) throws -> [[UInt8]] {
        seq &+= 1
        try sendRaw(Self.message(type: type, flags: Self.fRequest | Self.fDump, seq: seq, body: body), what)
        var out: [[UInt8]] = []
        while true {
            for m in try receive(what) {
                let t = m.u16(at: 4)
                if t == Self.nlmsgDone { return out }
                if t == Self.nlmsgError {
                    let e = m.count >= 20 ? -Int32(bitPattern: m.u32(at: 16)) : EBADMSG
                    throw NetlinkError(what: what, errno: e)
                }
                out.append(m)
            }
        }
    }

    /// Sends a request and waits for the kernel's acknowledgement; returns its errno (0: done).
    func request(_ m: [UInt8], what: String) throws -> Int32 {
        seq &+= 1
        var msg = m
        // Our sequence number, and a request that wants an answer.
        let flags = msg.u16(at: 6) | Self.fRequest | Self.fAck
        msg[6] = UInt8(flags & 0xff); msg[7] = UInt8(flags >> 8)
        for i in 0..<4 { msg[8 + i] = UInt8(truncatingIfNeeded: seq >> (8 * UInt32(i))) }
        for i in 0..<4 { msg[12 + i] = 0 }
        try sendRaw(msg, what)
        while true {
            for r in try receive(what) where r.u16(at: 4) == Self.nlmsgError && r.u32(at: 8) == seq {
                return -Int32(bitPattern: r.u32(at: 16))
            }
        }
    }

    /// `request`, throwing unless the kernel said yes.
    func must(_ m: [UInt8], what: String) throws {
        let e = try request(m, what: what)
        guard e == 0 else { throw NetlinkError(what: what, errno: e) }
    }
}
