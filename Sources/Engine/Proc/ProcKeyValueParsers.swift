/// Parsers for the "Key:\tvalue" files: status, smaps, fdinfo.

public struct ProcStatus: Sendable, Equatable {
    public var fields: [String: String] = [:]
    public var name: String { fields["Name"] ?? "" }
    public var state: String { fields["State"].map { String($0.prefix(1)) } ?? "" }
    public var umask: UInt32 { UInt32(fields["Umask"] ?? "", radix: 8) ?? 0 }
    public var tgid: Int32 { Int32(fields["Tgid"] ?? "") ?? 0 }
    public var pid: Int32 { Int32(fields["Pid"] ?? "") ?? 0 }
    public var ppid: Int32 { Int32(fields["PPid"] ?? "") ?? 0 }
    public var tracerPid: Int32 { Int32(fields["TracerPid"] ?? "") ?? 0 }
    public var uids: [UInt32] { ints("Uid") }
    public var gids: [UInt32] { ints("Gid") }
    public var groups: [UInt32] { ints("Groups") }
    public var nsPid: [Int32] { ints("NSpid").map { Int32(bitPattern: $0) } }
    public var nsTgid: [Int32] { ints("NStgid").map { Int32(bitPattern: $0) } }
    public var nsSid: [Int32] { ints("NSsid").map { Int32(bitPattern: $0) } }
    public var nsPgid: [Int32] { ints("NSpgid").map { Int32(bitPattern: $0) } }
    public var threads: Int { Int(fields["Threads"] ?? "") ?? 0 }
    public var sigPnd: UInt64 { hex("SigPnd") }
    public var shdPnd: UInt64 { hex("ShdPnd") }
    public var sigBlk: UInt64 { hex("SigBlk") }
    public var sigIgn: UInt64 { hex("SigIgn") }
    public var sigCgt: UInt64 { hex("SigCgt") }
    public var capInh: UInt64 { hex("CapInh") }
    public var capPrm: UInt64 { hex("CapPrm") }
    public var capEff: UInt64 { hex("CapEff") }
    public var capBnd: UInt64 { hex("CapBnd") }
    public var capAmb: UInt64 { hex("CapAmb") }
    public var noNewPrivs: Bool { fields["NoNewPrivs"] == "1" }
    public var seccompMode: Int { Int(fields["Seccomp"] ?? "") ?? 0 }
    public var seccompFilters: Int { Int(fields["Seccomp_filters"] ?? "") ?? 0 }

    func hex(_ k: String) -> UInt64 { UInt64(fields[k] ?? "", radix: 16) ?? 0 }
    func ints(_ k: String) -> [UInt32] {
        (fields[k] ?? "").split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { UInt32($0) }
    }
}

public struct ProcSmapsEntry: Sendable, Equatable {
    public var mapping: ProcMapping
    /// Sizes in kB, by key (Rss, Pss, Swap, Anonymous, Private_Dirty...).
    public var sizes: [String: UInt64]
    public var vmFlags: [String]
    public var rss: UInt64 { sizes["Rss"] ?? 0 }
    public var swap: UInt64 { sizes["Swap"] ?? 0 }
    public var anonymous: UInt64 { sizes["Anonymous"] ?? 0 }
}

public struct ProcFdInfo: Sendable, Equatable {
    public struct EpollTarget: Sendable, Equatable {
        public var tfd: Int32
        public var events: UInt32
        public var data: UInt64
    }
    public var pos: Int64 = 0
    public var flags: Int32 = 0
    public var mntId: Int32 = 0
    public var ino: UInt64 = 0
    /// Every "key: value" line, in order (duplicate keys such as tfd/wd lines kept).
    public var lines: [(key: String, value: String)] = []
    public var eventfdCount: UInt64? { lines.first { $0.key == "eventfd-count" }.flatMap { UInt64($0.value, radix: 16) } }
    public var signalfdMask: UInt64? { lines.first { $0.key == "sigmask" }.flatMap { UInt64($0.value, radix: 16) } }
    public var epollTargets: [EpollTarget] = []
    public var inotifyWatches: [[String: String]] = []
    public var timerfd: [String: String] = [:]

    public static func == (a: ProcFdInfo, b: ProcFdInfo) -> Bool {
        a.pos == b.pos && a.flags == b.flags && a.mntId == b.mntId && a.ino == b.ino
            && a.lines.map(\.key) == b.lines.map(\.key) && a.lines.map(\.value) == b.lines.map(\.value)
    }
}

enum KeyValue {
    /// Splits "Key:\tvalue" lines; `strict` rejects lines without a colon.
    static func lines(_ text: String, source: String, startLine: Int = 1) throws -> [(line: Int, key: String, value: String)] {
        var out: [(Int, String, String)] = []
        var n = startLine - 1
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            n += 1
            if raw.isEmpty { continue }
            guard let c = raw.firstIndex(of: ":") else {
                throw ProcError.malformed(path: source, line: n, reason: "no ':' in \"\(raw.prefix(60))\"")
            }
            let key = String(raw[..<c])
            let value = raw[raw.index(after: c)...].trimmingCharacters(in: .whitespaces)
            out.append((n, key, value))
        }
        return out
    }
}

public enum ProcStatusParser {
    public static func parse(_ text: String, source: String) throws -> ProcStatus {
        var s = ProcStatus()
        for (_, k, v) in try KeyValue.lines(text, source: source) { s.fields[k] = v }
        guard s.fields["Pid"] != nil else { throw ProcError.malformed(path: source, line: 1, reason: "no Pid line") }
        return s
    }
}

public enum ProcSmapsParser {
    public static func parse(_ text: String, source: String) throws -> [ProcSmapsEntry] {
        var out: [ProcSmapsEntry] = []
        var n = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            n += 1
            if raw.isEmpty { continue }
            // A mapping header starts with a hex range; attribute lines start with a capitalised key.
            let firstToken = raw.prefix { $0 != " " }
            if let dash = firstToken.firstIndex(of: "-"), dash != firstToken.startIndex,
               firstToken.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
                let m = try ProcMapsParser.parseLine(Array(raw.utf8), 0, raw.utf8.count, source: source, line: n)
                out.append(ProcSmapsEntry(mapping: m, sizes: [:], vmFlags: []))
                continue
            }
            guard !out.isEmpty, let c = raw.firstIndex(of: ":") else {
                throw ProcError.malformed(path: source, line: n, reason: "attribute outside a mapping")
            }
            let key = String(raw[..<c])
            let value = raw[raw.index(after: c)...].trimmingCharacters(in: .whitespaces)
            if key == "VmFlags" {
                out[out.count - 1].vmFlags = value.split(separator: " ").map(String.init)
            } else if let num = value.split(separator: " ").first.flatMap({ UInt64($0) }) {
                out[out.count - 1].sizes[key] = num
            }
        }
        return out
    }
}

public enum ProcFdInfoParser {
    public static func parse(_ text: String, source: String) throws -> ProcFdInfo {
        var info = ProcFdInfo()
        for (n, k, v) in try KeyValue.lines(text, source: source) {
            info.lines.append((k, v))
            switch k {
            case "pos":
                guard let p = Int64(v) else { throw ProcError.malformed(path: source, line: n, reason: "bad pos \(v)") }
                info.pos = p
            case "flags":
                guard let f = UInt32(v, radix: 8) else { throw ProcError.malformed(path: source, line: n, reason: "bad flags \(v)") }
                info.flags = Int32(bitPattern: f)
            case "mnt_id": info.mntId = Int32(v) ?? 0
            case "ino": info.ino = UInt64(v) ?? 0
            case "tfd":
                // "tfd:        5 events:       19 data: 0000000000000005  pos:0 ino:... sdev:..."
                let f = fields("tfd: " + v)
                info.epollTargets.append(.init(tfd: Int32(f["tfd"] ?? "") ?? -1,
                                               events: UInt32(f["events"] ?? "", radix: 16) ?? 0,
                                               data: UInt64(f["data"] ?? "", radix: 16) ?? 0))
            case "inotify":
                info.inotifyWatches.append(fields(v))
            case "clockid", "ticks", "settime flags", "it_value", "it_interval":
                info.timerfd[k] = v
            default: break
            }
        }
        return info
    }

    /// "a:1 b: 2 c:3" -> [a:1, b:2, c:3]
    static func fields(_ s: String) -> [String: String] {
        var out: [String: String] = [:]
        let toks = s.replacingOccurrences(of: ": ", with: ":").split(whereSeparator: { $0 == " " || $0 == "\t" })
        var pendingKey: String?
        for t in toks {
            if let c = t.firstIndex(of: ":") {
                let k = String(t[..<c]), v = String(t[t.index(after: c)...])
                if v.isEmpty { pendingKey = k } else { out[k] = v }
            } else if let k = pendingKey {
                out[k] = String(t); pendingKey = nil
            }
        }
        return out
    }
}
