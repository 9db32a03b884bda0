import Glibc

/// Addresses as people read them, for logs and errors; one inet_ntop for the whole engine.
enum NetFormat {
    static func ip(_ family: Int32, _ b: [UInt8]) -> String {
        guard b.count == (family == AF_INET6 ? 16 : 4) else { return b.map { String($0) }.joined(separator: ".") }
        var buf = [CChar](repeating: 0, count: 64)
        let ok = b.withUnsafeBytes { a in buf.withUnsafeMutableBufferPointer { inet_ntop(family, a.baseAddress, $0.baseAddress, 64) } } != nil
        return ok ? String(cString: buf) : "?"
    }

    /// "1.2.3.4:80" or "[::1]:80".
    static func endpoint(_ family: Int32, _ b: [UInt8], port: UInt32) -> String {
        family == AF_INET6 ? "[\(ip(family, b))]:\(port)" : "\(ip(family, b)):\(port)"
    }
}
