/// /proc/PID/status (and task/TID/status). Known keys are typed; every line is also kept
/// raw in `fields` so callers can reach keys this struct does not name.
public struct ProcStatus: Sendable, Equatable {
    public var fields: [String: String] = [:]

    public var name: String = ""
    /// Octal in the file ("0022").
    public var umask: UInt32 = 0
    /// First letter of "S (sleeping)"; `stateName` holds the word.
    public var state: String = ""
    public var stateName: String = ""
    public var tgid: Int32 = 0
    public var ngid: Int32 = 0
    public var pid: Int32 = 0
    public var ppid: Int32 = 0
    public var tracerPid: Int32 = 0
    /// Real, effective, saved, filesystem.
    public var uids: [UInt32] = []
    public var gids: [UInt32] = []
    public var fdSize: Int32 = 0
    public var groups: [UInt32] = []
    /// Outermost pid namespace first, the task's own namespace last.
    public var nsTgid: [Int32] = []
    public var nsPid: [Int32] = []
    public var nsPgid: [Int32] = []
    public var nsSid: [Int32] = []
    public var kthread: Bool = false
    /// Vm*, Rss*, HugetlbPages in kB.
    public var memoryKB: [String: UInt64] = [:]
    public var coreDumping: Bool = false
    public var thpEnabled: Bool = true
    public var threads: Int32 = 0
    /// SigQ "queued/limit".
    public var sigQueued: UInt64 = 0
    public var sigQueueLimit: UInt64 = 0
    public var sigPnd: UInt64 = 0
    public var shdPnd: UInt64 = 0
    public var sigBlk: UInt64 = 0
    public var sigIgn: UInt64 = 0
    public var sigCgt: UInt64 = 0
    public var capInh: UInt64 = 0
    public var capPrm: UInt64 = 0
    public var capEff: UInt64 = 0
    public var capBnd: UInt64 = 0
    public var capAmb: UInt64 = 0
    public var noNewPrivs: Bool = false
    /// 0 disabled, 1 strict, 2 filter.
    public var seccompMode: Int32 = 0
    public var seccompFilters: Int32 = 0
    public var cpusAllowedList: String = ""
    public var voluntaryCtxtSwitches: UInt64 = 0
    public var nonvoluntaryCtxtSwitches: UInt64 = 0

    public init() {}

    public var ruid: UInt32 { uids.count > 0 ? uids[0] : 0 }
    public var euid: UInt32 { uids.count > 1 ? uids[1] : 0 }
    public var rgid: UInt32 { gids.count > 0 ? gids[0] : 0 }
    public var egid: UInt32 { gids.count > 1 ? gids[1] : 0 }
    public var seccomp: Int32 { seccompMode }
    public var vmRSS: UInt64 { memoryKB["VmRSS"] ?? 0 }
    public var vmSize: UInt64 { memoryKB["VmSize"] ?? 0 }
}

public enum ProcStatusParser {
    public static func parse(_ text: String, source: String) throws -> ProcStatus {
        var s = ProcStatus()
        var n = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            n += 1
            if raw.isEmpty { continue }
            guard let c = raw.firstIndex(of: ":") else {
                throw ProcError.malformed(path: source, line: n, reason: "no ':' in \"\(raw.prefix(80))\"")
            }
            let key = String(raw[..<c])
            // Name keeps inner spaces; the kernel separates with a tab.
            let value = String(raw[raw.index(after: c)...].drop { $0 == "\t" || $0 == " " })
            s.fields[key] = value
            try assign(&s, key: key, value: value, line: n, source: source)
        }
        guard s.fields["Name"] != nil, s.fields["Pid"] != nil else {
            throw ProcError.malformed(path: source, line: n, reason: "no Name or Pid line")
        }
        return s
    }

    static func assign(_ s: inout ProcStatus, key: String, value v: String, line: Int, source: String) throws {
        func bad(_ what: String = "bad value") -> ProcError {
            .malformed(path: source, line: line, reason: "\(key): \(what): \"\(v.prefix(80))\"")
        }
        func i32() throws -> Int32 {
            guard let x = Int32(ProcText.trim(v)) else { throw bad() }
            return x
        }
        func u64(radix: Int = 10) throws -> UInt64 {
            guard let x = ProcText.unsigned(ProcText.trim(v), radix: radix) else { throw bad() }
            return x
        }
        func list<T: FixedWidthInteger>(_: T.Type, count: Int? = nil) throws -> [T] {
            let w = ProcText.words(v)
            let out = w.compactMap { T($0) }
            guard out.count == w.count else { throw bad() }
            if let count, out.count != count { throw bad("expected \(count) values") }
            return out
        }
        switch key {
        case "Name": s.name = v
        case "Umask": s.umask = UInt32(truncatingIfNeeded: try u64(radix: 8))
        case "State":
            guard let f = v.first else { throw bad() }
            s.state = String(f)
            s.stateName = v.split(separator: "(").dropFirst().first.map { String($0.prefix { $0 != ")" }) } ?? ""
        case "Tgid": s.tgid = try i32()
        case "Ngid": s.ngid = try i32()
        case "Pid": s.pid = try i32()
        case "PPid": s.ppid = try i32()
        case "TracerPid": s.tracerPid = try i32()
        case "Uid": s.uids = try list(UInt32.self, count: 4)
        case "Gid": s.gids = try list(UInt32.self, count: 4)
        case "FDSize": s.fdSize = try i32()
        case "Groups": s.groups = try list(UInt32.self)
        case "NStgid": s.nsTgid = try list(Int32.self)
        case "NSpid": s.nsPid = try list(Int32.self)
        case "NSpgid": s.nsPgid = try list(Int32.self)
        case "NSsid": s.nsSid = try list(Int32.self)
        case "Kthread": s.kthread = try u64() != 0
        case "CoreDumping": s.coreDumping = try u64() != 0
        case "THP_enabled": s.thpEnabled = try u64() != 0
        case "Threads": s.threads = try i32()
        case "SigQ":
            let parts = ProcText.trim(v).split(separator: "/")
            guard parts.count == 2, let q = UInt64(parts[0]), let l = UInt64(parts[1]) else { throw bad() }
            s.sigQueued = q; s.sigQueueLimit = l
        case "SigPnd": s.sigPnd = try u64(radix: 16)
        case "ShdPnd": s.shdPnd = try u64(radix: 16)
        case "SigBlk": s.sigBlk = try u64(radix: 16)
        case "SigIgn": s.sigIgn = try u64(radix: 16)
        case "SigCgt": s.sigCgt = try u64(radix: 16)
        case "CapInh": s.capInh = try u64(radix: 16)
        case "CapPrm": s.capPrm = try u64(radix: 16)
        case "CapEff": s.capEff = try u64(radix: 16)
        case "CapBnd": s.capBnd = try u64(radix: 16)
        case "CapAmb": s.capAmb = try u64(radix: 16)
        case "NoNewPrivs": s.noNewPrivs = try u64() != 0
        case "Seccomp": s.seccompMode = try i32()
        case "Seccomp_filters": s.seccompFilters = try i32()
        case "Cpus_allowed_list": s.cpusAllowedList = v
        case "voluntary_ctxt_switches": s.voluntaryCtxtSwitches = try u64()
        case "nonvoluntary_ctxt_switches": s.nonvoluntaryCtxtSwitches = try u64()
        default:
            if key.hasPrefix("Vm") || key.hasPrefix("Rss") || key == "HugetlbPages" {
                guard let kb = ProcText.words(v).first.flatMap({ UInt64($0) }) else { throw bad() }
                s.memoryKB[key] = kb
            }
        }
    }
}
