/// One line of /proc/PID/net/raw, raw6, icmp or icmp6 (the format of udp): what the kernel's
/// table holds for a raw or ping socket of the task's network namespace.
public struct ProcNetSocket: Equatable, Sendable {
    /// Addresses as the kernel keeps them (network order in memory), one word for IPv4, four for IPv6.
    public var local: [UInt32] = []
    /// Host order: a raw socket's protocol, a ping socket's ident.
    public var localPort: UInt16 = 0
    public var remote: [UInt32] = []
    public var remotePort: UInt16 = 0
    /// TCP_ESTABLISHED (1) once connected, TCP_CLOSE (7) otherwise.
    public var state: UInt8 = 0
    public var txQueue: UInt32 = 0
    public var rxQueue: UInt32 = 0
    public var inode: UInt64 = 0

    public init() {}
}

public enum ProcNetSocketParser {
    /// "sl local:port remote:port st tx:rx tr:when retrnsmt uid timeout inode ..." after a header
    /// line. Addresses are the in-memory words printed as host-order hex (%08X each).
    public static func parse(_ text: String, source: String) throws -> [ProcNetSocket] {
        var out: [ProcNetSocket] = []
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() where n > 0 {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            func bad(_ r: String) -> ProcError { .malformed(path: source, line: n + 1, reason: r) }
            guard f.count >= 10 else { throw bad("\(f.count) fields, need 10") }
            var s = ProcNetSocket()
            (s.local, s.localPort) = try endpoint(f[1], bad)
            (s.remote, s.remotePort) = try endpoint(f[2], bad)
            guard let st = UInt8(f[3], radix: 16) else { throw bad("state \(f[3])") }
            s.state = st
            let q = f[4].split(separator: ":")
            guard q.count == 2, let tx = UInt32(q[0], radix: 16), let rx = UInt32(q[1], radix: 16) else { throw bad("queues \(f[4])") }
            (s.txQueue, s.rxQueue) = (tx, rx)
            guard let ino = UInt64(f[9]) else { throw bad("inode \(f[9])") }
            s.inode = ino
            out.append(s)
        }
        return out
    }

    static func endpoint(_ field: Substring, _ bad: (String) -> ProcError) throws -> ([UInt32], UInt16) {
        let p = field.split(separator: ":")
        guard p.count == 2, let port = UInt16(p[1], radix: 16), p[0].count == 8 || p[0].count == 32 else { throw bad("address \(field)") }
        let hex = Array(p[0].utf8)
        var words: [UInt32] = []
        for k in stride(from: 0, to: hex.count, by: 8) {
            guard let w = UInt32(String(decoding: hex[k..<k + 8], as: UTF8.self), radix: 16) else { throw bad("address \(field)") }
            words.append(w)
        }
        return (words, port)
    }
}

extension ProcReader {
    /// The raw ("raw", "raw6") or ping ("icmp", "icmp6") sockets of the network namespace of `pid`.
    public func netSockets(pid: Int32, table: String) throws -> [ProcNetSocket] {
        let p = path(pid: pid, "net/\(table)")
        return try ProcNetSocketParser.parse(readText(p, pid: pid), source: p)
    }
}
