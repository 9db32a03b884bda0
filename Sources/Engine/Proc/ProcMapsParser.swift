/// /proc/PID/maps: "start-end perms offset major:minor inode   path". Parsed from bytes
/// because a process may have tens of thousands of mappings.
public enum ProcMapsParser {
    public static func parse(_ text: String, source: String) throws -> [ProcMapping] {
        var text = text
        return try text.withUTF8 { try parse(bytes: $0, source: source) }
    }

    public static func parse(_ bytes: [UInt8], source: String) throws -> [ProcMapping] {
        try bytes.withUnsafeBufferPointer { try parse(bytes: $0, source: source) }
    }

    public static func parse(bytes b: UnsafeBufferPointer<UInt8>, source: String) throws -> [ProcMapping] {
        var out: [ProcMapping] = []
        out.reserveCapacity(b.count / 64)
        try ProcBytes.forEachLine(b) { out.append(try parseLine($0, source: source)) }
        return out
    }

    static func parseLine(_ l: ProcLine, source: String) throws -> ProcMapping {
        let b = l.bytes, e = l.end
        var p = l.start
        func bad(_ why: String) -> ProcError {
            .malformed(path: source, line: l.number, reason: "\(why) at column \(p - l.start + 1) in \"\(ProcBytes.string(b, l.start, min(e, l.start + 120)))\"")
        }
        // Reads a number up to `stop` and consumes the stop byte.
        func number(radix: UInt64, until stop: UInt8, what: String) throws -> UInt64 {
            let s = p
            while p < e && b[p] != stop { p += 1 }
            guard p < e else { throw bad("truncated line, missing \(what)") }
            guard let v = ProcBytes.unsigned(b, s, p, radix: radix) else { p = s; throw bad("bad \(what)") }
            p += 1
            return v
        }
        let start = try number(radix: 16, until: 0x2d, what: "start address")
        let end = try number(radix: 16, until: 0x20, what: "end address")
        guard end >= start else { throw bad("end below start") }
        guard p + 5 <= e, b[p + 4] == 0x20 else { throw bad("bad permissions") }
        let r = b[p] == 0x72, w = b[p + 1] == 0x77, x = b[p + 2] == 0x78
        guard r || b[p] == 0x2d, w || b[p + 1] == 0x2d, x || b[p + 2] == 0x2d,
              b[p + 3] == 0x73 || b[p + 3] == 0x70 else { throw bad("bad permissions") }
        let shared = b[p + 3] == 0x73
        p += 5
        let offset = try number(radix: 16, until: 0x20, what: "offset")
        let major = try number(radix: 16, until: 0x3a, what: "device major")
        let minor = try number(radix: 16, until: 0x20, what: "device minor")
        guard major <= UInt32.max, minor <= UInt32.max else { throw bad("device number too big") }
        // The inode is the last fixed field: it may end the line (anonymous mapping, no trailing space).
        let s = p
        while p < e && b[p] != 0x20 { p += 1 }
        guard let inode = ProcBytes.unsigned(b, s, p, radix: 10) else { p = s; throw bad("bad inode") }
        // The kernel pads to a column before the path; paths themselves start with '/' or '['.
        while p < e && b[p] == 0x20 { p += 1 }
        return ProcMapping(start: start, end: end, readable: r, writable: w, executable: x, shared: shared,
                           offset: offset, devMajor: UInt32(major), devMinor: UInt32(minor),
                           inode: inode, path: ProcBytes.string(b, p, e))
    }

    /// True when the line starts like a maps header ("hex-hex "), used by smaps to tell
    /// headers from "Key: value" lines (keys such as "Anonymous" start with hex letters).
    static func looksLikeHeader(_ l: ProcLine) -> Bool {
        var p = l.start
        while p < l.end && ProcBytes.hexDigit(l.bytes[p]) != nil { p += 1 }
        return p > l.start && p < l.end && l.bytes[p] == 0x2d
    }
}

/// One mapping of /proc/PID/smaps with its counters.
public struct ProcSmapsEntry: Sendable, Equatable {
    public var mapping: ProcMapping
    /// Every numeric "Key: N [kB]" line by key, in kB where the kernel says kB
    /// (Size, Rss, Pss, Swap, Anonymous, Private_Dirty, ...; also THPeligible, ProtectionKey).
    public var fields: [String: UInt64]
    /// Two-letter flags of the VmFlags line ("rd", "wr", "mr", "gd", "dd", "sd", ...).
    public var vmFlags: [String]

    public init(mapping: ProcMapping, fields: [String: UInt64] = [:], vmFlags: [String] = []) {
        self.mapping = mapping; self.fields = fields; self.vmFlags = vmFlags
    }

    public var size: UInt64 { fields["Size"] ?? 0 }
    public var kernelPageSize: UInt64 { fields["KernelPageSize"] ?? 0 }
    public var mmuPageSize: UInt64 { fields["MMUPageSize"] ?? 0 }
    public var rss: UInt64 { fields["Rss"] ?? 0 }
    public var pss: UInt64 { fields["Pss"] ?? 0 }
    public var sharedClean: UInt64 { fields["Shared_Clean"] ?? 0 }
    public var sharedDirty: UInt64 { fields["Shared_Dirty"] ?? 0 }
    public var privateClean: UInt64 { fields["Private_Clean"] ?? 0 }
    public var privateDirty: UInt64 { fields["Private_Dirty"] ?? 0 }
    public var referenced: UInt64 { fields["Referenced"] ?? 0 }
    public var anonymous: UInt64 { fields["Anonymous"] ?? 0 }
    public var anonHugePages: UInt64 { fields["AnonHugePages"] ?? 0 }
    public var swap: UInt64 { fields["Swap"] ?? 0 }
    public var swapPss: UInt64 { fields["SwapPss"] ?? 0 }
    public var locked: UInt64 { fields["Locked"] ?? 0 }
    public func hasFlag(_ f: String) -> Bool { vmFlags.contains(f) }
}

/// /proc/PID/smaps: a maps header line followed by "Key:   N kB" lines and a VmFlags line.
public enum ProcSmapsParser {
    public static func parse(_ text: String, source: String) throws -> [ProcSmapsEntry] {
        var text = text
        return try text.withUTF8 { try parse(bytes: $0, source: source) }
    }

    public static func parse(_ bytes: [UInt8], source: String) throws -> [ProcSmapsEntry] {
        try bytes.withUnsafeBufferPointer { try parse(bytes: $0, source: source) }
    }

    public static func parse(bytes b: UnsafeBufferPointer<UInt8>, source: String) throws -> [ProcSmapsEntry] {
        var out: [ProcSmapsEntry] = []
        try ProcBytes.forEachLine(b) { l in
            if ProcMapsParser.looksLikeHeader(l) {
                out.append(ProcSmapsEntry(mapping: try ProcMapsParser.parseLine(l, source: source)))
                return
            }
            var c = l.start
            while c < l.end && b[c] != 0x3a { c += 1 }
            guard c < l.end else {
                throw ProcError.malformed(path: source, line: l.number, reason: "no ':' in \"\(ProcBytes.string(b, l.start, l.end))\"")
            }
            guard !out.isEmpty else {
                throw ProcError.malformed(path: source, line: l.number, reason: "attribute before the first mapping")
            }
            let key = ProcBytes.string(b, l.start, c)
            let toks = ProcBytes.tokens(b, c + 1, l.end)
            if key == "VmFlags" {
                out[out.count - 1].vmFlags = toks.map { ProcBytes.string(b, $0.lowerBound, $0.upperBound) }
            } else if let t = toks.first {
                if let v = ProcBytes.unsigned(b, t.lowerBound, t.upperBound, radix: 10) {
                    out[out.count - 1].fields[key] = v
                } else if toks.count == 2, ProcBytes.string(b, toks[1].lowerBound, toks[1].upperBound) == "kB" {
                    throw ProcError.malformed(path: source, line: l.number, reason: "\(key): not a number")
                }
                // Other non-numeric values are future kernel additions; not ours to reject.
            }
        }
        return out
    }
}
