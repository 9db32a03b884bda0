/// /proc/PID/stat. The comm field is in parentheses and may itself contain spaces and ')',
/// so the fields after it are found from the LAST ')'.
public struct ProcStat: Sendable, Equatable {
    public var pid: Int32
    public var comm: String
    public var state: String
    public var ppid: Int32
    public var pgrp: Int32
    public var session: Int32
    public var ttyNr: Int32
    public var tpgid: Int32
    public var flags: UInt32
    public var utime: UInt64
    public var stime: UInt64
    public var priority: Int64
    public var nice: Int64
    public var numThreads: Int64
    public var starttime: UInt64
    public var vsize: UInt64
    public var rss: Int64
    public var startCode: UInt64
    public var endCode: UInt64
    public var startStack: UInt64
    public var exitSignal: Int32
    public var processor: Int32
    public var startData: UInt64
    public var endData: UInt64
    public var startBrk: UInt64
    public var argStart: UInt64
    public var argEnd: UInt64
    public var envStart: UInt64
    public var envEnd: UInt64
    public var exitCode: Int32

    public var isZombie: Bool { state == "Z" || state == "X" }
}

public enum ProcStatParser {
    public static func parse(_ text: String, source: String) throws -> ProcStat {
        func bad(_ r: String) -> ProcError { .malformed(path: source, line: 1, reason: r) }
        guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close else {
            throw bad("no (comm)")
        }
        guard let pid = Int32(text[..<open].trimmingCharacters(in: .whitespaces)) else { throw bad("bad pid") }
        let comm = String(text[text.index(after: open)..<close])
        let rest = text[text.index(after: close)...].split(whereSeparator: { $0 == " " || $0 == "\n" })
        // rest[0] is field 3 (state); field N is rest[N - 3].
        guard rest.count >= 50 else { throw bad("only \(rest.count + 2) fields, expected at least 52") }
        func u(_ n: Int) throws -> UInt64 {
            guard let v = UInt64(rest[n - 3]) else { throw bad("field \(n) is not a number: \(rest[n - 3])") }
            return v
        }
        func i(_ n: Int) throws -> Int64 {
            guard let v = Int64(rest[n - 3]) else { throw bad("field \(n) is not a number: \(rest[n - 3])") }
            return v
        }
        func i32(_ n: Int) throws -> Int32 {
            guard let v = Int32(exactly: try i(n)) else { throw bad("field \(n) out of range") }
            return v
        }
        return ProcStat(
            pid: pid, comm: comm, state: String(rest[0]), ppid: try i32(4), pgrp: try i32(5), session: try i32(6),
            ttyNr: try i32(7), tpgid: try i32(8), flags: UInt32(truncatingIfNeeded: try u(9)),
            utime: try u(14), stime: try u(15), priority: try i(18), nice: try i(19), numThreads: try i(20),
            starttime: try u(22), vsize: try u(23), rss: try i(24), startCode: try u(26), endCode: try u(27),
            startStack: try u(28), exitSignal: try i32(38), processor: try i32(39),
            startData: try u(45), endData: try u(46), startBrk: try u(47), argStart: try u(48), argEnd: try u(49),
            envStart: try u(50), envEnd: try u(51), exitCode: try i32(52))
    }
}

/// One line of /proc/PID/mountinfo.
public struct ProcMount: Sendable, Equatable {
    public var mountId: Int32
    public var parentId: Int32
    public var devMajor: UInt32
    public var devMinor: UInt32
    public var root: String
    public var mountPoint: String
    public var options: String
    public var optionalFields: [String]
    public var fsType: String
    public var source: String
    public var superOptions: String
}

public enum ProcMountInfoParser {
    public static func parse(_ text: String, source: String) throws -> [ProcMount] {
        var out: [ProcMount] = []
        var n = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            n += 1
            if raw.isEmpty { continue }
            let f = raw.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard let sep = f.firstIndex(of: "-"), sep >= 6, f.count >= sep + 4 else {
                throw ProcError.malformed(path: source, line: n, reason: "expected 10+ fields with a '-' separator")
            }
            let dev = f[2].split(separator: ":")
            guard let id = Int32(f[0]), let parent = Int32(f[1]), dev.count == 2,
                  let maj = UInt32(dev[0]), let min = UInt32(dev[1]) else {
                throw ProcError.malformed(path: source, line: n, reason: "bad ids or device \(f[2])")
            }
            out.append(ProcMount(mountId: id, parentId: parent, devMajor: maj, devMinor: min,
                                 root: unescape(f[3]), mountPoint: unescape(f[4]), options: f[5],
                                 optionalFields: Array(f[6..<sep]), fsType: f[sep + 1], source: unescape(f[sep + 2]),
                                 superOptions: f[sep + 3]))
        }
        return out
    }

    /// mountinfo escapes space, tab, newline and backslash as \ooo.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var bytes: [UInt8] = []
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == 0x5c, i + 3 < u.count + 0, i + 3 <= u.count - 1 || i + 3 == u.count - 0,
               let v = UInt8(String(decoding: u[(i + 1)..<min(i + 4, u.count)], as: UTF8.self), radix: 8) {
                bytes.append(v); i += 4
            } else { bytes.append(u[i]); i += 1 }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
