import Foundation

/// One seccomp filter: a classic BPF program (struct sock_filter[], 8 bytes each) and the
/// SECCOMP_FILTER_FLAG_* it is installed with.
public struct SeccompFilterProgram: Equatable, Hashable, Sendable {
    public var program: [UInt8]
    public var flags: UInt32

    static let retClass: UInt16 = 0x06        // BPF_RET
    static let retA: UInt16 = 0x10            // BPF_A as the returned value
    static let userNotif: UInt32 = 0x7fc0_0000
    static let actionMask: UInt32 = 0xffff_0000
    public static let maxInstructions = 4096   // BPF_MAXINSNS
    public static let flagTsync: UInt32 = 1

    /// Why this filter cannot come back as it behaves now, or nil. A filter that returns
    /// SECCOMP_RET_USER_NOTIF hands syscalls to a listener fd (SECCOMP_FILTER_FLAG_NEW_LISTENER)
    /// that ptrace does not show and cryo cannot make again; one that returns its accumulator
    /// might return that too.
    public var unrestorable: String? {
        for i in stride(from: 0, to: program.count - 7, by: 8) {
            let code = UInt16(program[i]) | UInt16(program[i + 1]) << 8
            guard code & 0x07 == SeccompFilterProgram.retClass else { continue }
            if code & 0x18 == SeccompFilterProgram.retA {
                return "instruction \(i / 8) returns the accumulator, which may be SECCOMP_RET_USER_NOTIF (a listener cryo cannot restore)"
            }
            let k = UInt32(program[i + 4]) | UInt32(program[i + 5]) << 8 | UInt32(program[i + 6]) << 16 | UInt32(program[i + 7]) << 24
            if k & SeccompFilterProgram.actionMask == SeccompFilterProgram.userNotif {
                return "instruction \(i / 8) returns SECCOMP_RET_USER_NOTIF, whose listener fd cryo cannot restore"
            }
        }
        return nil
    }
}

/// seccomp.img as CRIU writes it: each thread's chain once, oldest filter first, where a
/// filter's `prev` names the next (newer) one to install; a thread's `seccomp_filter` names
/// the oldest of its chain. Threads and processes with the same chain share its entries.
public final class SeccompImageBuilder: @unchecked Sendable {
    public private(set) var entry = Img_SeccompEntry()
    private var chains: [[SeccompFilterProgram]: UInt32] = [:]
    private let lock = NSLock()
    public init() {}

    /// The index of the chain's oldest filter in the image.
    public func add(_ chain: [SeccompFilterProgram]) -> UInt32 {
        precondition(!chain.isEmpty)
        lock.lock(); defer { lock.unlock() }
        if let i = chains[chain] { return i }
        let first = UInt32(entry.seccompFilters.count)
        for (n, f) in chain.enumerated() {
            var e = Img_SeccompFilter()
            e.filter = Data(f.program)
            e.flags = f.flags
            if n + 1 < chain.count { e.prev = first + UInt32(n) + 1 }
            entry.seccompFilters.append(e)
        }
        chains[chain] = first
        return first
    }

    public var isEmpty: Bool { entry.seccompFilters.isEmpty }
}

/// A thread's seccomp state, read from outside while it is frozen.
public enum SeccompReader {
    /// Mode 0 (disabled), 1 (strict) or 2 (filter, with its chain oldest first). Refuses,
    /// naming the thread, what cannot come back exactly.
    public static func read(pid: Int32, tid: Int32, status: ProcStatus) throws -> (mode: Img_SeccompMode, chain: [SeccompFilterProgram]) {
        switch status.seccompMode {
        case 0: return (.disabled, [])
        case 1: return (.strict, [])
        case 2: break
        default: throw SecurityError.seccomp(pid: pid, tid: tid, reason: "unknown mode \(status.seccompMode)")
        }
        var chain: [SeccompFilterProgram] = []
        do {
            while let prog = try Ptrace.seccompFilter(tid, index: chain.count) {
                guard chain.count < 10_000 else { throw SecurityError.seccomp(pid: pid, tid: tid, reason: "more than 10000 filters") }
                chain.append(SeccompFilterProgram(program: prog, flags: try Ptrace.seccompFlags(tid, index: chain.count)))
            }
        } catch let e as SystemCallError {
            throw SecurityError.seccomp(pid: pid, tid: tid, reason: "its filters cannot be read (\(e))")
        }
        guard !chain.isEmpty else { throw SecurityError.seccomp(pid: pid, tid: tid, reason: "filter mode without a filter") }
        // Seccomp_filters counts every filter attached, shared ones included.
        if status.seccompFilters > 0 && Int(status.seccompFilters) != chain.count {
            throw SecurityError.seccomp(pid: pid, tid: tid, reason: "/proc counts \(status.seccompFilters) filters, ptrace read \(chain.count)")
        }
        for (i, f) in chain.enumerated() {
            if let why = f.unrestorable { throw SecurityError.seccomp(pid: pid, tid: tid, reason: "filter \(i) (of \(chain.count)): \(why)") }
        }
        return (.filter, chain)
    }
}

/// The filters of seccomp.img, checked before anything is created.
public struct SeccompChains: Sendable {
    public let entry: Img_SeccompEntry

    public init(entry: Img_SeccompEntry) { self.entry = entry }

    /// The chain a thread's `seccomp_filter` names, oldest first, each filter checked.
    public func chain(from index: UInt32, tid: Int32, file: String) throws -> [SeccompFilterProgram] {
        var out: [SeccompFilterProgram] = []
        var i = index
        while true {
            guard Int(i) < entry.seccompFilters.count else {
                throw ImageError.inconsistent(file: file, offset: 0, reason: "tid \(tid): seccomp filter \(i) of \(entry.seccompFilters.count)")
            }
            guard out.count < entry.seccompFilters.count else {
                throw ImageError.inconsistent(file: file, offset: 0, reason: "tid \(tid): seccomp filters chained in a loop")
            }
            let f = entry.seccompFilters[Int(i)]
            let n = f.filter.count
            guard n > 0, n % 8 == 0, n / 8 <= SeccompFilterProgram.maxInstructions else {
                throw ImageError.inconsistent(file: file, offset: 0, reason: "tid \(tid): seccomp filter \(i) is \(n) bytes, not 1 to 4096 instructions")
            }
            out.append(SeccompFilterProgram(program: [UInt8](f.filter), flags: f.flags))
            guard f.hasPrev else { return out }
            i = f.prev
        }
    }
}
