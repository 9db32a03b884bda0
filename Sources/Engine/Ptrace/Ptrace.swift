import CKernel
import Glibc

/// Every ptrace(2) request cryo makes goes through here.
public enum Ptrace {
    // Request numbers (linux/ptrace.h); spelled out because glibc's header and the kernel's clash.
    enum Request: Int {
        case peekData = 2, pokeData = 5, cont = 7, kill = 8, singleStep = 9, syscall = 24
        case getRegs = 12, setRegs = 13, detach = 17
        case setOptions = 0x4200, getEventMsg = 0x4201, getSiginfo = 0x4202, setSiginfo = 0x4203
        case getRegset = 0x4204, setRegset = 0x4205, seize = 0x4206, interrupt = 0x4207, listen = 0x4208
        case peekSiginfo = 0x4209, getSigmask = 0x420a, setSigmask = 0x420b
        case seccompGetFilter = 0x420c, getRseqConfiguration = 0x420f
    }

    public struct Options: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        public static let traceSysGood = Options(rawValue: 0x1)
        public static let traceFork = Options(rawValue: 0x2)
        public static let traceClone = Options(rawValue: 0x8)
        public static let traceExit = Options(rawValue: 0x40)
        public static let exitKill = Options(rawValue: 0x10_0000)
        public static let suspendSeccomp = Options(rawValue: 0x20_0000)
    }

    public static let eventStop: Int32 = 128
    static let ntPrstatus = 1
    static let ntX86Xstate = 0x202
    /// Large enough for any xstate layout this kernel reports (11008 bytes with AMX).
    static let xstateBufferSize = 16384

    @discardableResult
    static func request(_ req: Request, _ tid: Int32, _ addr: UnsafeMutableRawPointer? = nil,
                        _ data: UnsafeMutableRawPointer? = nil) throws -> Int {
        let r = ck_ptrace(req.rawValue, tid, addr, data)
        if r < 0 { throw SystemCallError(call: "ptrace(\(req))", errno: ck_errno(), context: "tid \(tid)") }
        return r
    }

    static func request(_ req: Request, _ tid: Int32, addr: Int, data: Int) throws -> Int {
        try request(req, tid, UnsafeMutableRawPointer(bitPattern: addr), UnsafeMutableRawPointer(bitPattern: data))
    }

    public static func seize(_ tid: Int32, options: Options) throws {
        _ = try request(.seize, tid, addr: 0, data: options.rawValue)
    }

    public static func setOptions(_ tid: Int32, _ options: Options) throws {
        _ = try request(.setOptions, tid, addr: 0, data: options.rawValue)
    }

    public static func interrupt(_ tid: Int32) throws { _ = try request(.interrupt, tid, addr: 0, data: 0) }

    public static func cont(_ tid: Int32, signal: Int32 = 0) throws {
        _ = try request(.cont, tid, addr: 0, data: Int(signal))
    }

    public static func singleStep(_ tid: Int32, signal: Int32 = 0) throws {
        _ = try request(.singleStep, tid, addr: 0, data: Int(signal))
    }

    /// Resumes until the next syscall entry or exit stop (PTRACE_SYSCALL).
    public static func resumeToSyscall(_ tid: Int32) throws {
        _ = try request(.syscall, tid, addr: 0, data: 0)
    }

    public static func detach(_ tid: Int32, signal: Int32 = 0) throws {
        _ = try request(.detach, tid, addr: 0, data: Int(signal))
    }

    public static func getRegs(_ tid: Int32) throws -> user_regs_struct {
        var regs = user_regs_struct()
        try withUnsafeMutablePointer(to: &regs) { _ = try request(.getRegs, tid, nil, UnsafeMutableRawPointer($0)) }
        return regs
    }

    public static func setRegs(_ tid: Int32, _ regs: user_regs_struct) throws {
        var r = regs
        try withUnsafeMutablePointer(to: &r) { _ = try request(.setRegs, tid, nil, UnsafeMutableRawPointer($0)) }
    }

    /// The full XSAVE area (legacy FXSAVE, header, and every component including AMX tiles).
    public static func getXState(_ tid: Int32) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: xstateBufferSize)
        let len = try buf.withUnsafeMutableBytes { p -> Int in
            var iov = iovec(iov_base: p.baseAddress, iov_len: p.count)
            try withUnsafeMutablePointer(to: &iov) {
                _ = try request(.getRegset, tid, UnsafeMutableRawPointer(bitPattern: ntX86Xstate), UnsafeMutableRawPointer($0))
            }
            return iov.iov_len
        }
        return Array(buf.prefix(len))
    }

    public static func setXState(_ tid: Int32, _ state: [UInt8]) throws {
        var buf = state
        try buf.withUnsafeMutableBytes { p in
            var iov = iovec(iov_base: p.baseAddress, iov_len: p.count)
            try withUnsafeMutablePointer(to: &iov) {
                _ = try request(.setRegset, tid, UnsafeMutableRawPointer(bitPattern: ntX86Xstate), UnsafeMutableRawPointer($0))
            }
        }
    }

    public static func getSigmask(_ tid: Int32) throws -> UInt64 {
        var mask: UInt64 = 0
        try withUnsafeMutablePointer(to: &mask) {
            _ = try request(.getSigmask, tid, UnsafeMutableRawPointer(bitPattern: 8), UnsafeMutableRawPointer($0))
        }
        return mask
    }

    public static func setSigmask(_ tid: Int32, _ mask: UInt64) throws {
        var m = mask
        try withUnsafeMutablePointer(to: &m) {
            _ = try request(.setSigmask, tid, UnsafeMutableRawPointer(bitPattern: 8), UnsafeMutableRawPointer($0))
        }
    }

    /// Pending signals with their full siginfo (128 bytes each), without dequeuing them.
    /// `shared` selects the process-wide queue instead of the thread's own.
    public static func peekSiginfo(_ tid: Int32, shared: Bool) throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        let batch = 32
        var buf = [UInt8](repeating: 0, count: 128 * batch)
        while true {
            var args = ck_peeksiginfo_args(off: UInt64(out.count), flags: shared ? 1 : 0, nr: Int32(batch))
            let n = try buf.withUnsafeMutableBytes { p in
                try withUnsafeMutablePointer(to: &args) {
                    try request(.peekSiginfo, tid, UnsafeMutableRawPointer($0), p.baseAddress)
                }
            }
            if n <= 0 { break }
            for i in 0..<n { out.append(Array(buf[(i * 128)..<((i + 1) * 128)])) }
            if n < batch { break }
        }
        return out
    }

    public struct RseqConfig: Equatable, Sendable {
        public var pointer: UInt64
        public var size: UInt32
        public var signature: UInt32
        public var flags: UInt32
    }

    public static func rseqConfiguration(_ tid: Int32) throws -> RseqConfig {
        var c = ck_rseq_configuration()
        try withUnsafeMutablePointer(to: &c) {
            _ = try request(.getRseqConfiguration, tid,
                            UnsafeMutableRawPointer(bitPattern: MemoryLayout<ck_rseq_configuration>.size),
                            UnsafeMutableRawPointer($0))
        }
        return RseqConfig(pointer: c.rseq_abi_pointer, size: c.rseq_abi_size, signature: c.signature, flags: c.flags)
    }

    public static func eventMessage(_ tid: Int32) throws -> UInt {
        var msg: UInt = 0
        try withUnsafeMutablePointer(to: &msg) { _ = try request(.getEventMsg, tid, nil, UnsafeMutableRawPointer($0)) }
        return msg
    }

    /// One word of another task's memory, bypassing page protections (for r-x text).
    public static func peek(_ tid: Int32, _ addr: UInt64) throws -> UInt64 {
        // PEEKDATA returns the word, so -1 is ambiguous: check errno.
        errno = 0
        let r = ck_ptrace(Request.peekData.rawValue, tid, UnsafeMutableRawPointer(bitPattern: UInt(addr)), nil)
        if r == -1 && ck_errno() != 0 {
            throw SystemCallError(call: "ptrace(peekData)", errno: ck_errno(), context: "tid \(tid) addr 0x\(String(addr, radix: 16))")
        }
        return UInt64(bitPattern: Int64(r))
    }

    public static func poke(_ tid: Int32, _ addr: UInt64, _ value: UInt64) throws {
        _ = try request(.pokeData, tid, UnsafeMutableRawPointer(bitPattern: UInt(addr)),
                        UnsafeMutableRawPointer(bitPattern: UInt(value)))
    }
}

/// A decoded wait(2) status.
public enum WaitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// A ptrace stop: the stopping signal and the PTRACE_EVENT_* (0 for a signal-delivery stop).
    case stopped(signal: Int32, event: Int32)
    case other(Int32)

    public init(raw: Int32) {
        if ck_wifexited(raw) != 0 { self = .exited(ck_wexitstatus(raw)) }
        else if ck_wifsignaled(raw) != 0 { self = .signaled(ck_wtermsig(raw)) }
        else if ck_wifstopped(raw) != 0 { self = .stopped(signal: ck_wstopsig(raw), event: ck_wptrace_event(raw)) }
        else { self = .other(raw) }
    }

    public var description: String {
        switch self {
        case .exited(let c): return "exited with \(c)"
        case .signaled(let s): return "killed by signal \(s)"
        case .stopped(let s, let e): return e == 0 ? "stopped by signal \(s)" : "ptrace event \(e) (signal \(s))"
        case .other(let r): return "wait status 0x\(String(r, radix: 16))"
        }
    }

    /// Waits for one task (thread or process), retrying on EINTR.
    public static func wait(_ tid: Int32, flags: Int32 = __WALL) throws -> WaitStatus {
        var st: Int32 = 0
        while true {
            let r = waitpid(tid, &st, flags)
            if r == tid { return WaitStatus(raw: st) }
            if r < 0 && errno == EINTR { continue }
            if r == 0 { return .other(0) }
            throw SystemCallError(call: "waitpid", errno: errno, context: "tid \(tid)")
        }
    }
}
