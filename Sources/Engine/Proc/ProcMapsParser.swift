/// /proc/PID/maps: "start-end perms offset major:minor inode   path". Parsed from bytes
/// because a process may have tens of thousands of mappings.
public enum ProcMapsParser {
    public static func parse(_ text: String, source: String) throws -> [ProcMapping] {
        try parse(Array(text.utf8), source: source)
    }

    public static func parse(_ b: [UInt8], source: String) throws -> [ProcMapping] {
        var out: [ProcMapping] = []
        out.reserveCapacity(b.count / 80)
        var lineNo = 0
        var i = 0
        while i < b.count {
            lineNo += 1
            var end = i
            while end < b.count && b[end] != 0x0a { end += 1 }
            if end > i { out.append(try parseLine(b, i, end, source: source, line: lineNo)) }
            i = end + 1
        }
        return out
    }

    static func parseLine(_ b: [UInt8], _ s: Int, _ e: Int, source: String, line: Int) throws -> ProcMapping {
        var p = s
        func bad(_ why: String) -> ProcError { .malformed(path: source, line: line, reason: why) }
        func hex(until stop: UInt8) throws -> UInt64 {
            var v: UInt64 = 0
            var digits = 0
            while p < e && b[p] != stop {
                guard let d = hexDigit(b[p]) else { throw bad("bad hex digit at column \(p - s + 1)") }
                guard digits < 16 else { throw bad("number too long at column \(p - s + 1)") }
                v = v << 4 | UInt64(d)
                digits += 1
                p += 1
            }
            guard digits > 0, p < e || stop == 0x20 else { throw bad("truncated line") }
            return v
        }
        func skip(_ c: UInt8) throws {
            guard p < e && b[p] == c else { throw bad("expected '\(Character(UnicodeScalar(c)))' at column \(p - s + 1)") }
            p += 1
        }
        let start = try hex(until: 0x2d); try skip(0x2d)
        let end = try hex(until: 0x20); try skip(0x20)
        guard end >= start else { throw bad("end below start") }
        guard p + 4 <= e else { throw bad("truncated permissions") }
        let perms = b[p..<(p + 4)]
        let r = perms[p] == 0x72, w = perms[p + 1] == 0x77, x = perms[p + 2] == 0x78
        guard perms[p + 3] == 0x73 || perms[p + 3] == 0x70 else { throw bad("bad sharing flag") }
        let shared = perms[p + 3] == 0x73
        p += 4; try skip(0x20)
        let offset = try hex(until: 0x20); try skip(0x20)
        let major = try hex(until: 0x3a); try skip(0x3a)
        let minor = try hex(until: 0x20); try skip(0x20)
        var inode: UInt64 = 0
        var digits = 0
        while p < e && b[p] != 0x20 {
            guard b[p] >= 0x30 && b[p] <= 0x39, digits < 20 else { throw bad("bad inode") }
            let (m, o1) = inode.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(b[p] - 0x30))
            guard !o1 && !o2 else { throw bad("inode overflows") }
            inode = a; digits += 1; p += 1
        }
        guard digits > 0 else { throw bad("missing inode") }
        while p < e && b[p] == 0x20 { p += 1 }
        let path = String(decoding: b[p..<e], as: UTF8.self)
        return ProcMapping(start: start, end: end, readable: r, writable: w, executable: x, shared: shared,
                           offset: offset, devMajor: UInt32(truncatingIfNeeded: major), devMinor: UInt32(truncatingIfNeeded: minor),
                           inode: inode, path: path)
    }

    @inline(__always) static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x61...0x66: return c - 0x61 + 10
        case 0x41...0x46: return c - 0x41 + 10
        default: return nil
        }
    }
}

extension ProcMapping {
    /// The kernel appends " (deleted)" to the path of an unlinked file.
    public var isDeleted: Bool { path.hasSuffix(" (deleted)") }
    public var pathWithoutDeleted: String { isDeleted ? String(path.dropLast(10)) : path }
    public var isAnonymous: Bool { inode == 0 && !path.hasPrefix("/") }
    public var isSpecial: Bool { ["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"].contains(path) }
}
