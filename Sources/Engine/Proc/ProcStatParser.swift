/// /proc/PID/stat (and task/TID/stat), every field by name, numbered as in proc(5).
public struct ProcStat: Sendable, Equatable {
    public var pid: Int32 = 0         // field 1
    /// Field 2 without its parentheses; may contain spaces, '(' and ')'.
    public var comm: String = ""
    /// Field 3: R, S, D, T, t, Z, X, I, ...
    public var state: String = ""
    public var ppid: Int32 = 0  // field 4
    public var pgrp: Int32 = 0  // field 5
    public var session: Int32 = 0  // field 6
    public var ttyNr: Int32 = 0  // field 7
    public var tpgid: Int32 = 0  // field 8
    public var flags: UInt32 = 0  // field 9
    public var minflt: UInt64 = 0  // field 10
    public var cminflt: UInt64 = 0  // field 11
    public var majflt: UInt64 = 0  // field 12
    public var cmajflt: UInt64 = 0  // field 13
    public var utime: UInt64 = 0  // field 14
    public var stime: UInt64 = 0  // field 15
    public var cutime: Int64 = 0  // field 16
    public var cstime: Int64 = 0  // field 17
    public var priority: Int64 = 0  // field 18
    public var nice: Int64 = 0  // field 19
    public var numThreads: Int64 = 0  // field 20
    public var itrealvalue: Int64 = 0  // field 21
    public var starttime: UInt64 = 0  // field 22
    public var vsize: UInt64 = 0  // field 23
    public var rss: Int64 = 0  // field 24
    public var rsslim: UInt64 = 0  // field 25
    public var startCode: UInt64 = 0  // field 26
    public var endCode: UInt64 = 0  // field 27
    public var startStack: UInt64 = 0  // field 28
    public var kstkesp: UInt64 = 0  // field 29
    public var kstkeip: UInt64 = 0  // field 30
    public var signal: UInt64 = 0  // field 31
    public var blocked: UInt64 = 0  // field 32
    public var sigignore: UInt64 = 0  // field 33
    public var sigcatch: UInt64 = 0  // field 34
    public var wchan: UInt64 = 0  // field 35
    public var nswap: UInt64 = 0  // field 36
    public var cnswap: UInt64 = 0  // field 37
    public var exitSignal: Int32 = 0  // field 38
    public var processor: Int32 = 0  // field 39
    public var rtPriority: UInt32 = 0  // field 40
    public var policy: UInt32 = 0  // field 41
    public var delayacctBlkioTicks: UInt64 = 0  // field 42
    public var guestTime: UInt64 = 0  // field 43
    public var cguestTime: Int64 = 0  // field 44
    public var startData: UInt64 = 0  // field 45
    public var endData: UInt64 = 0  // field 46
    public var startBrk: UInt64 = 0  // field 47
    public var argStart: UInt64 = 0  // field 48
    public var argEnd: UInt64 = 0  // field 49
    public var envStart: UInt64 = 0  // field 50
    public var envEnd: UInt64 = 0  // field 51
    public var exitCode: Int32 = 0  // field 52

    public init() {}

    public var isZombie: Bool { state == "Z" || state == "X" }
    /// PF_EXITING: do_exit has begun. The task still shows in /proc, but its mm, files and fs
    /// are being released, so its maps, fds and cwd read as empty: they say nothing of its state.
    public var isExiting: Bool { flags & 0x4 != 0 }
    /// Stopped by a signal (T) or in a ptrace stop (t).
    public var isStopped: Bool { state == "T" || state == "t" }
}

public enum ProcStatParser {
    /// Fields after comm are found from the LAST ')' since comm may itself contain ')'.
    public static let fieldCount = 52

    public static func parse(_ text: String, source: String) throws -> ProcStat {
        var text = text
        return try text.withUTF8 { try parse(bytes: $0, source: source) }
    }

    public static func parse(bytes b: UnsafeBufferPointer<UInt8>, source: String) throws -> ProcStat {
        func bad(_ r: String) -> ProcError { .malformed(path: source, line: 1, reason: r) }
        guard let open = b.firstIndex(of: 0x28), let close = b.lastIndex(of: 0x29), open < close else {
            throw bad("no (comm) field")
        }
        var e = b.count
        while e > close && (b[e - 1] == 0x0a || b[e - 1] == 0x20) { e -= 1 }
        var s = ProcStat()
        var ps = 0, pe = open
        while ps < pe && b[ps] == 0x20 { ps += 1 }
        while pe > ps && b[pe - 1] == 0x20 { pe -= 1 }
        guard let pid = ProcBytes.signed(b, ps, pe), let pid32 = Int32(exactly: pid) else { throw bad("field 1 (pid) is not a number") }
        s.pid = pid32
        s.comm = ProcBytes.string(b, open + 1, close)
        // rest[0] is field 3 (state); field N is rest[N - 3].
        let rest = ProcBytes.tokens(b, close + 1, e)
        guard rest.count >= fieldCount - 2 else {
            throw bad("only \(rest.count + 2) fields, expected \(fieldCount)")
        }
        s.state = ProcBytes.string(b, rest[0].lowerBound, rest[0].upperBound)
        func u<T: FixedWidthInteger>(_ n: Int) throws -> T {
            let r = rest[n - 3]
            guard let v = ProcBytes.unsigned(b, r.lowerBound, r.upperBound, radix: 10), let t = T(exactly: v) else {
                throw bad("field \(n) is not a \(T.self): \(ProcBytes.string(b, r.lowerBound, r.upperBound))")
            }
            return t
        }
        func i<T: FixedWidthInteger>(_ n: Int) throws -> T {
            let r = rest[n - 3]
            guard let v = ProcBytes.signed(b, r.lowerBound, r.upperBound), let t = T(exactly: v) else {
                throw bad("field \(n) is not a \(T.self): \(ProcBytes.string(b, r.lowerBound, r.upperBound))")
            }
            return t
        }
        s.ppid = try i(4)
        s.pgrp = try i(5)
        s.session = try i(6)
        s.ttyNr = try i(7)
        s.tpgid = try i(8)
        s.flags = try u(9)
        s.minflt = try u(10)
        s.cminflt = try u(11)
        s.majflt = try u(12)
        s.cmajflt = try u(13)
        s.utime = try u(14)
        s.stime = try u(15)
        s.cutime = try i(16)
        s.cstime = try i(17)
        s.priority = try i(18)
        s.nice = try i(19)
        s.numThreads = try i(20)
        s.itrealvalue = try i(21)
        s.starttime = try u(22)
        s.vsize = try u(23)
        s.rss = try i(24)
        s.rsslim = try u(25)
        s.startCode = try u(26)
        s.endCode = try u(27)
        s.startStack = try u(28)
        s.kstkesp = try u(29)
        s.kstkeip = try u(30)
        s.signal = try u(31)
        s.blocked = try u(32)
        s.sigignore = try u(33)
        s.sigcatch = try u(34)
        s.wchan = try u(35)
        s.nswap = try u(36)
        s.cnswap = try u(37)
        s.exitSignal = try i(38)
        s.processor = try i(39)
        s.rtPriority = try u(40)
        s.policy = try u(41)
        s.delayacctBlkioTicks = try u(42)
        s.guestTime = try u(43)
        s.cguestTime = try i(44)
        s.startData = try u(45)
        s.endData = try u(46)
        s.startBrk = try u(47)
        s.argStart = try u(48)
        s.argEnd = try u(49)
        s.envStart = try u(50)
        s.envEnd = try u(51)
        s.exitCode = try i(52)
        return s
    }
}
