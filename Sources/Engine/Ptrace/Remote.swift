import CKernel
import Glibc
import Logging

public enum RemoteError: Error, CustomStringConvertible {
    case noSyscallInstruction(tid: Int32)
    case syscallFailed(tid: Int32, call: String, errno: Int32)
    case unexpectedStop(tid: Int32, status: WaitStatus, call: String)
    case didNotExecute(tid: Int32, call: String, rip: UInt64)

    public var description: String {
        switch self {
        case .noSyscallInstruction(let t): return "tid \(t): no syscall instruction found to inject through"
        case .syscallFailed(let t, let c, let e): return "tid \(t): injected \(c) failed: \(String(cString: strerror(e))) (errno \(e))"
        case .unexpectedStop(let t, let s, let c): return "tid \(t): unexpected \(s) while injecting \(c)"
        case .didNotExecute(let t, let c, let rip): return "tid \(t): injected \(c) did not complete (rip 0x\(String(rip, radix: 16)))"
        }
    }
}

/// Runs system calls inside a ptrace-stopped task, without a parasite blob: point rip at a
/// `syscall` instruction, load the arguments, single-step, read rax. The task's registers and
/// signal mask are put back exactly as they were by `finish()` (and after every call), so a
/// syscall it was stopped in still restarts. The one place in cryo that injects syscalls.
public final class Remote {
    public let tid: Int32
    public let savedRegs: user_regs_struct
    let savedMask: UInt64
    private(set) var syscallIP: UInt64
    /// Bytes we overwrote with a `syscall` instruction when no existing one was found.
    private var patched: (addr: UInt64, word: UInt64)?
    private var scratchPage: (addr: UInt64, size: Int)?
    public var scratchRange: (addr: UInt64, size: Int)? { scratchPage }
    /// Ranges the restored task must not keep, unmapped by `finish(registers:sigmask:)`.
    public var unmapOnFinish: [(UInt64, UInt64)] = []
    private var finished = false
    /// A single-step since the last park(): the task sits in a SIGTRAP delivery-stop.
    private var stepped = false
    private let log = Logger(label: "remote")

    /// `tid` must be in a ptrace stop (seized and interrupted). `maps` are the task's mappings,
    /// used to find a `syscall` instruction in the vDSO.
    public init(tid: Int32, maps: [ProcMapping]) throws {
        self.tid = tid
        self.savedRegs = try Ptrace.getRegs(tid)
        self.savedMask = try Ptrace.getSigmask(tid)
        if let ip = Remote.findSyscallInstruction(tid: tid, maps: maps) {
            syscallIP = ip
        } else {
            // Write one at the current rip and put the word back in finish().
            let addr = savedRegs.rip
            let word = try Ptrace.peek(tid, addr)
            try Ptrace.poke(tid, addr, (word & ~0xffff) | 0x050f)
            patched = (addr, word)
            syscallIP = addr
        }
        // Nothing the task would do with a signal must run between our steps. SIGTRAP stays
        // unblocked: the single-step trap is forced, and forcing a blocked signal makes the
        // kernel reset its handler to SIG_DFL, which would change the task.
        try Ptrace.setSigmask(tid, Remote.injectionMask)
    }

    /// Every signal blocked but SIGTRAP, while we inject.
    static let injectionMask = ~(UInt64(1) << UInt64(SIGTRAP - 1))

    static func findSyscallInstruction(tid: Int32, maps: [ProcMapping]) -> UInt64? {
        guard let vdso = maps.first(where: { $0.path == "[vdso]" }) else { return nil }
        let size = Int(vdso.size)
        var buf = [UInt8](repeating: 0, count: size)
        let n = (try? buf.withUnsafeMutableBytes { try Sys.processVmRead(pid: tid, local: $0.baseAddress!, remote: vdso.start, len: size) }) ?? 0
        guard n > 1 else { return nil }
        for i in 0..<(n - 1) where buf[i] == 0x0f && buf[i + 1] == 0x05 {
            return vdso.start + UInt64(i)
        }
        return nil
    }

    /// The raw kernel result: >= 0, or -errno.
    public func rawSyscall(_ nr: Int, _ args: [UInt64]) throws -> Int64 {
        precondition(!finished, "Remote used after finish")
        var regs = savedRegs
        regs.rax = UInt64(nr)
        regs.orig_rax = UInt64(bitPattern: -1)  // not in a syscall: no restart logic on resume
        let a = args + Array(repeating: 0, count: max(0, 6 - args.count))
        regs.rdi = a[0]; regs.rsi = a[1]; regs.rdx = a[2]
        regs.r10 = a[3]; regs.r8 = a[4]; regs.r9 = a[5]
        regs.rip = syscallIP
        try Ptrace.setRegs(tid, regs)
        defer { try? Ptrace.setRegs(tid, savedRegs) }
        let name = SyscallNumber(rawValue: nr).map { "\($0)" } ?? "syscall \(nr)"
        let st = try step()
        guard case .stopped(let sig, 0) = st, sig == SIGTRAP else {
            throw RemoteError.unexpectedStop(tid: tid, status: st, call: name)
        }
        let after = try Ptrace.getRegs(tid)
        guard after.rip == syscallIP + 2 else {
            throw RemoteError.didNotExecute(tid: tid, call: name, rip: after.rip)
        }
        return Int64(bitPattern: after.rax)
    }

    /// Single-steps the instruction at `syscallIP` and waits. A job-control trap
    /// (PTRACE_EVENT_STOP) reported before it ran is stepped past again: a thread seized in
    /// group-stop may still have our interrupt's trap pending, and letting the thread run its
    /// own code to use that trap up would change a stopped task (see TreeFreezer.passStops).
    private func step() throws -> WaitStatus {
        var st = WaitStatus.other(0)
        stepped = true
        for _ in 0..<8 {
            try Ptrace.singleStep(tid)
            st = try WaitStatus.wait(tid)
            guard case .stopped(_, let ev) = st, ev == Ptrace.eventStop,
                  let rip = (try? Ptrace.getRegs(tid))?.rip else { return st }
            if rip == syscallIP + 2 {
                // The trap came after the instruction ran: the step's SIGTRAP is still queued.
                try Ptrace.cont(tid)
                return try WaitStatus.wait(tid)
            }
            guard rip == syscallIP else { return st }
            log.debug("tid \(tid): job-control trap before the injected instruction, stepping again")
        }
        return st  // still trapping: the caller reports it as unexpected
    }

    /// clone3 inside the task: a new process (or thread, with CLONE_THREAD) with exactly
    /// `setTid`, which starts in a ptrace stop, traced by us (PTRACE_O_TRACEFORK/CLONE are set
    /// on this task for the call). The child is a copy of this task at the injection point;
    /// it never runs its own code before the caller rebuilds it. Returns the new tid.
    public func cloneTask(flags: UInt64, exitSignal: UInt64, setTid: Int32) throws -> Int32 {
        precondition(!finished, "Remote used after finish")
        let area = try scratch(size: 4096) + 4096 - 128  // the end of the scratch page
        var args: [UInt8] = []
        for v in [flags, 0, 0, 0, exitSignal, 0, 0, 0, area + 88, 1, 0] as [UInt64] {
            for i in 0..<8 { args.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        for i in 0..<4 { args.append(UInt8(truncatingIfNeeded: UInt32(bitPattern: setTid) >> (8 * UInt32(i)))) }
        try writeMemory(args, at: area)
        try Ptrace.setOptions(tid, [.traceFork, .traceClone, .suspendSeccomp])
        defer { try? Ptrace.setOptions(tid, [.suspendSeccomp]) }

        var regs = savedRegs
        regs.rax = UInt64(SyscallNumber.clone3.rawValue)
        regs.orig_rax = UInt64(bitPattern: -1)
        regs.rdi = area; regs.rsi = 88
        regs.rip = syscallIP
        try Ptrace.setRegs(tid, regs)
        defer { try? Ptrace.setRegs(tid, savedRegs) }
        var child: Int32 = 0
        // The fork/clone event stop comes first, then the single-step trap after the syscall.
        for i in 0..<4 {
            let st = i == 0 ? try step() : try WaitStatus.wait(tid)
            switch st {
            case .stopped(SIGTRAP, let ev) where ev == 1 || ev == 3:  // PTRACE_EVENT_FORK, _CLONE
                child = Int32(truncatingIfNeeded: try Ptrace.eventMessage(tid))
                try Ptrace.singleStep(tid)
                continue
            case .stopped(SIGTRAP, 0):
                break
            default:
                throw RemoteError.unexpectedStop(tid: tid, status: st, call: "clone3")
            }
            break
        }
        let after = try Ptrace.getRegs(tid)
        let r = Int64(bitPattern: after.rax)
        if r < 0 && r >= -4095 { throw RemoteError.syscallFailed(tid: tid, call: "clone3 (tid \(setTid))", errno: Int32(-r)) }
        if child == 0 { child = Int32(truncatingIfNeeded: r) }
        // The new task's first stop.
        for _ in 0..<4 {
            let st = try WaitStatus.wait(child)
            if case .stopped(_, let ev) = st, ev == Ptrace.eventStop { return child }
            if case .stopped(let sig, 0) = st, sig == SIGSTOP { return child }
            if case .exited = st { throw RemoteError.unexpectedStop(tid: child, status: st, call: "clone3 child start") }
            if case .signaled = st { throw RemoteError.unexpectedStop(tid: child, status: st, call: "clone3 child start") }
            try Ptrace.cont(child)
        }
        throw RemoteError.unexpectedStop(tid: child, status: .other(0), call: "clone3 child start")
    }

    /// Ends the task: exit_group(code), or death by `signal` (its action reset to default and
    /// unblocked first), leaving a zombie for its real parent. Waits for the exit.
    public func terminate(exitCode: Int32, signal: Int32) throws {
        precondition(!finished, "Remote used after finish")
        if signal != 0 {
            var act = [UInt8](repeating: 0, count: 32)  // SIG_DFL, no flags, empty mask
            let s = try scratch()
            try writeMemory(act, at: s)
            act.removeAll()
            _ = try rawSyscall(SyscallNumber.rtSigaction.rawValue, [UInt64(signal), s, 0, 8])
            var zero = rlimit(rlim_cur: 0, rlim_max: 0)
            _ = withUnsafePointer(to: &zero) { ck_syscall6(SyscallNumber.prlimit64.rawValue, Int(tid), Int(RLIMIT_CORE.rawValue), Int(bitPattern: $0), 0, 0, 0) }
            finished = true
            try Ptrace.setSigmask(tid, 0)
            try Ptrace.cont(tid, signal: signal)
        } else {
            var regs = savedRegs
            regs.rax = UInt64(SyscallNumber.exitGroup.rawValue)
            regs.orig_rax = UInt64(bitPattern: -1)
            regs.rdi = UInt64(UInt32(bitPattern: exitCode))
            regs.rip = syscallIP
            finished = true
            try Ptrace.setRegs(tid, regs)
            try Ptrace.cont(tid)
        }
        for _ in 0..<8 {
            let st = try WaitStatus.wait(tid)
            switch st {
            case .exited, .signaled: return
            case .stopped(let sig, 0) where sig == signal: try Ptrace.cont(tid, signal: sig)
            default: try Ptrace.cont(tid)
            }
        }
        throw RemoteError.unexpectedStop(tid: tid, status: .other(0), call: "exit")
    }

    /// Injects `nr` and throws if the kernel returned an error.
    @discardableResult
    public func syscall(_ nr: SyscallNumber, _ args: UInt64...) throws -> UInt64 {
        let r = try rawSyscall(nr.rawValue, args)
        if r < 0 && r >= -4095 { throw RemoteError.syscallFailed(tid: tid, call: "\(nr)", errno: Int32(-r)) }
        return UInt64(bitPattern: r)
    }

    /// A private read-write page in the task for syscall arguments, mapped on first use and
    /// unmapped by finish().
    public func scratch(size: Int = 4096) throws -> UInt64 {
        if let s = scratchPage, s.size >= size { return s.addr }
        if let s = scratchPage { try syscall(.munmap, s.addr, UInt64(s.size)); scratchPage = nil }
        let len = (size + 4095) & ~4095
        let addr = try syscall(.mmap, 0, UInt64(len), UInt64(PROT_READ | PROT_WRITE),
                               UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
        scratchPage = (addr, len)
        return addr
    }

    public func writeMemory(_ bytes: [UInt8], at addr: UInt64) throws {
        _ = try bytes.withUnsafeBytes { try Sys.processVmWrite(pid: tid, local: $0.baseAddress!, remote: addr, len: $0.count) }
    }

    public func readMemory(at addr: UInt64, count: Int) throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: count)
        _ = try buf.withUnsafeMutableBytes { try Sys.processVmRead(pid: tid, local: $0.baseAddress!, remote: addr, len: count) }
        return buf
    }

    /// The vDSO holding our syscall instruction was moved by `delta` bytes (restore does this).
    public func relocate(by delta: Int64) {
        syscallIP = UInt64(bitPattern: Int64(bitPattern: syscallIP) &+ delta)
    }

    /// Maps the scratch area at a fixed address (restore picks one the image leaves free).
    public func scratch(at addr: UInt64, size: Int) throws -> UInt64 {
        precondition(scratchPage == nil)
        let len = (size + 4095) & ~4095
        let got = try syscall(.mmap, addr, UInt64(len), UInt64(PROT_READ | PROT_WRITE),
                              UInt64(MAP_PRIVATE | MAP_ANONYMOUS | 0x10_0000 /* MAP_FIXED_NOREPLACE */), UInt64(bitPattern: -1), 0)
        scratchPage = (got, len)
        return got
    }

    /// The scratch page was unmapped by other means (ReturnTrampoline's way home).
    public func forgetScratch() { scratchPage = nil }

    public func dropScratch() throws {
        if let s = scratchPage { try syscall(.munmap, s.addr, UInt64(s.size)); scratchPage = nil }
    }

    /// Ends injection leaving the task with new registers and mask (a restored task's own),
    /// instead of the ones it had when we took it.
    public func finish(registers: user_regs_struct, sigmask: UInt64) throws {
        try dropScratch()
        // Last: the syscall instruction itself may be in one of them (the single-step
        // trap after it needs no instruction from there).
        for (addr, len) in unmapOnFinish { try syscall(.munmap, addr, len) }
        unmapOnFinish = []
        finished = true
        try Ptrace.setRegs(tid, registers)
        try Ptrace.setSigmask(tid, sigmask)
    }

    /// Undoes everything: unmaps the scratch page, restores patched text, registers and mask.
    public func finish() throws {
        guard !finished else { return }
        var firstError: Error?
        if let s = scratchPage {
            do { try syscall(.munmap, s.addr, UInt64(s.size)) } catch { firstError = error }
            scratchPage = nil
        }
        finished = true
        if let p = patched {
            do { try Ptrace.poke(tid, p.addr, p.word) } catch { firstError = firstError ?? error }
        }
        do { try Ptrace.setRegs(tid, savedRegs) } catch { firstError = firstError ?? error }
        do { try Ptrace.setSigmask(tid, savedMask) } catch { firstError = firstError ?? error }
        if stepped { do { try park() } catch { firstError = firstError ?? error } }
        if let e = firstError { throw e }
    }

    /// Moves the task from the SIGTRAP delivery-stop our last single-step left it in to a
    /// job-control trap (PTRACE_INTERRUPT, then resume without the signal). A tracer that dies
    /// delivers the signal of a delivery-stop, and SIGTRAP kills; a job-control trap just
    /// resumes, and the task's restart logic still runs on its own registers. The task runs no
    /// code of its own in between: get_signal takes the trap before returning to user space.
    public func park() throws {
        stepped = false
        try Ptrace.interrupt(tid)
        try Ptrace.cont(tid)
        for _ in 0..<4 {
            let st = try WaitStatus.wait(tid)
            if case .stopped(_, let ev) = st, ev == Ptrace.eventStop { return }
            guard case .stopped(SIGTRAP, 0) = st else { throw RemoteError.unexpectedStop(tid: tid, status: st, call: "park") }
            try Ptrace.cont(tid)  // a second trap of the step, dropped the same way
        }
        throw RemoteError.unexpectedStop(tid: tid, status: .other(0), call: "park")
    }

    deinit {
        if !finished {
            do { try finish() } catch { log.error("tid \(tid): could not restore task after injection: \(error)") }
        }
    }
}
