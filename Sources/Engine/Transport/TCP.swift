import Glibc

/// An error of the network side of a transfer, naming the peer.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public let peer: String
    public let reason: String
    public init(peer: String, _ reason: String) { self.peer = peer; self.reason = reason }
    public var description: String { "\(peer): \(reason)" }
}

/// Blocking TCP sockets over IPv4/IPv6, just what the page server and its clients need.
public enum TCP {
    static func sockaddr(_ address: String, _ port: UInt16) throws -> (storage: sockaddr_storage, len: socklen_t, family: Int32) {
        var ss = sockaddr_storage()
        var a4 = in_addr()
        if inet_pton(AF_INET, address, &a4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = a4
            withUnsafeBytes(of: sin) { src in withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: src) } }
            return (ss, socklen_t(MemoryLayout<sockaddr_in>.size), AF_INET)
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, address, &a6) == 1 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            sin6.sin6_addr = a6
            withUnsafeBytes(of: sin6) { src in withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: src) } }
            return (ss, socklen_t(MemoryLayout<sockaddr_in6>.size), AF_INET6)
        }
        throw TransportError(peer: address, "not a numeric IPv4 or IPv6 address")
    }

    /// A listening socket on address:port (port 0: the kernel picks), and the port it got.
    public static func listen(address: String, port: UInt16) throws -> (fd: Int32, port: UInt16) {
        var (ss, len, family) = try sockaddr(address, port)
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(call: "socket", errno: errno, context: "\(address):\(port)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        let ok = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        guard ok == 0 else { let e = errno; close(fd); throw SystemCallError(call: "bind", errno: e, context: "\(address):\(port)") }
        guard Glibc.listen(fd, 16) == 0 else { let e = errno; close(fd); throw SystemCallError(call: "listen", errno: e, context: "\(address):\(port)") }
        var got = sockaddr_storage()
        var gl = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &got) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { getsockname(fd, $0, &gl) } }
        let bound: UInt16 = withUnsafeBytes(of: got) { b in
            // sin_port and sin6_port sit at the same offset, in network order.
            UInt16(b[2]) << 8 | UInt16(b[3])
        }
        return (fd, bound)
    }

    public static func connect(address: String, port: UInt16) throws -> Int32 {
        var (ss, len, family) = try sockaddr(address, port)
        let fd = socket(family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(call: "socket", errno: errno, context: "\(address):\(port)") }
        while true {
            let r = withUnsafePointer(to: &ss) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) } }
            if r == 0 { break }
            if errno == EINTR { continue }
            let e = errno
            close(fd)
            throw SystemCallError(call: "connect", errno: e, context: "page server \(address):\(port)")
        }
        setNoDelay(fd)
        return fd
    }

    public static func setNoDelay(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// "ADDR:PORT" of the other end.
    public static func peerName(_ fd: Int32) -> String {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { getpeername(fd, $0, &len) } }
        guard r == 0 else { return "fd \(fd)" }
        return withUnsafeBytes(of: ss) { b -> String in
            let port = UInt32(b[2]) << 8 | UInt32(b[3])
            if ss.ss_family == sa_family_t(AF_INET) { return NetFormat.endpoint(AF_INET, Array(b[4..<8]), port: port) }
            return NetFormat.endpoint(AF_INET6, Array(b[8..<24]), port: port)
        }
    }

    /// Reads exactly `count` bytes. Returns how many arrived before the peer closed (short on EOF).
    public static func readFull(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
        var got = 0
        while got < count {
            let n = recv(fd, buf + got, count - got, Int32(MSG_WAITALL))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "recv", errno: errno, context: peerName(fd))
            }
            if n == 0 { break }
            got += n
        }
        return got
    }

    public static func writeFull(_ fd: Int32, _ buf: UnsafeRawPointer, _ count: Int) throws {
        var done = 0
        while done < count {
            let n = send(fd, buf + done, count - done, Int32(MSG_NOSIGNAL))
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "send", errno: errno, context: peerName(fd))
            }
            done += n
        }
    }

    /// `a` then `b` in one sendmsg where the socket takes them (a frame header and its payload).
    public static func writeFull(_ fd: Int32, _ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) throws {
        var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress), iov_len: a.count),
                   iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)]
        var left = a.count + b.count
        while left > 0 {
            let n = iov.withUnsafeMutableBufferPointer { v -> Int in
                var m = msghdr()
                m.msg_iov = v.baseAddress
                m.msg_iovlen = 2
                return sendmsg(fd, &m, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "send", errno: errno, context: peerName(fd))
            }
            left -= n
            iov.consume(n)
        }
    }

    public static func writeFull(_ fd: Int32, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try writeFull(fd, $0.baseAddress!, $0.count) }
    }
}
