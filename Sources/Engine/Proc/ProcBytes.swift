/// Byte-level helpers shared by the parsers. /proc text is ASCII apart from file names, so
/// parsing bytes avoids String indexing costs on big files (maps with 10k+ lines).
struct ProcLine {
    let bytes: UnsafeBufferPointer<UInt8>
    let number: Int          // 1-based
    let start: Int
    let end: Int             // exclusive, '\n' not included
}

enum ProcBytes {
    /// Calls `body` for every non-empty line; the last line may lack '\n'.
    static func forEachLine(_ b: UnsafeBufferPointer<UInt8>, _ body: (ProcLine) throws -> Void) rethrows {
        var i = 0, n = 0
        while i < b.count {
            n += 1
            var e = i
            while e < b.count && b[e] != 0x0a { e += 1 }
            if e > i { try body(ProcLine(bytes: b, number: n, start: i, end: e)) }
            i = e + 1
        }
    }

    static func string(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> String {
        s >= e ? "" : String(decoding: UnsafeBufferPointer(rebasing: b[s..<e]), as: UTF8.self)
    }

    @inline(__always) static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 }

    @inline(__always) static func hexDigit(_ c: UInt8) -> UInt64? {
        switch c {
        case 0x30...0x39: return UInt64(c - 0x30)
        case 0x61...0x66: return UInt64(c - 0x61 + 10)
        case 0x41...0x46: return UInt64(c - 0x41 + 10)
        default: return nil
        }
    }

    /// Unsigned number in `radix` (8, 10 or 16) over the whole range; nil on a bad digit,
    /// an empty range or overflow.
    static func unsigned(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int, radix: UInt64) -> UInt64? {
        guard s < e else { return nil }
        var v: UInt64 = 0
        for i in s..<e {
            guard let d = hexDigit(b[i]), d < radix else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: radix)
            let (a, o2) = m.addingReportingOverflow(d)
            if o1 || o2 { return nil }
            v = a
        }
        return v
    }

    static func signed(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> Int64? {
        guard s < e else { return nil }
        if b[s] == 0x2d {
            guard let m = unsigned(b, s + 1, e, radix: 10), m <= UInt64(Int64.max) + 1 else { return nil }
            return m == UInt64(Int64.max) + 1 ? Int64.min : -Int64(m)
        }
        guard let v = unsigned(b, s, e, radix: 10), v <= UInt64(Int64.max) else { return nil }
        return Int64(v)
    }

    /// Splits a range into whitespace-separated token ranges.
    static func tokens(_ b: UnsafeBufferPointer<UInt8>, _ s: Int, _ e: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var i = s
        while i < e {
            while i < e && isSpace(b[i]) { i += 1 }
            let t = i
            while i < e && !isSpace(b[i]) { i += 1 }
            if i > t { out.append(t..<i) }
        }
        return out
    }
}

/// String-level versions for the small "Key:\tvalue" files, where clarity beats speed.
enum ProcText {
    static func unsigned<S: StringProtocol>(_ s: S, radix: Int = 10) -> UInt64? {
        var t = Substring(s)
        if radix == 16, t.hasPrefix("0x") { t = t.dropFirst(2) }
        return UInt64(t, radix: radix)
    }
    static func trim<S: StringProtocol>(_ s: S) -> Substring {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let a = s.firstIndex(where: { !isBlank($0) }), let b = s.lastIndex(where: { !isBlank($0) }) else { return "" }
        return Substring(s[a...b])
    }
    static func words<S: StringProtocol>(_ s: S) -> [Substring] {
        Substring(s).split(whereSeparator: { $0 == " " || $0 == "\t" })
    }
}
