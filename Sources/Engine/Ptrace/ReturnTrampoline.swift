import CKernel
import Glibc
import Logging

/// Injected syscalls a task survives even if cryo dies (SIGKILL, the OOM killer) while one is
/// under way, for work that keeps a task inside injection for long (SplicedPages: one vmsplice
/// per pipeful for the whole transfer).
///
/// Remote single-steps: a tracer that dies then leaves the task with a queued SIGTRAP (fatal)
/// and cryo's registers. Here the task runs a few instructions of ours instead:
///
///     syscall                      ; the injected call; cryo takes its result at the exit stop
///     close(fds); munmap(scratch)  ; only reached if cryo is gone: drop what we lent the task
///     rt_sigreturn                 ; back into the task's own context
///
/// and cryo resumes it with PTRACE_SYSCALL (entry and exit stops, never a signal: with
/// PTRACE_O_TRACESYSGOOD the stop code a dead tracer leaves behind, 0x85, is no signal the
/// kernel delivers). The sigreturn frame lies below the task's red zone, where a signal's
/// would: its registers (with the kernel's syscall restart applied, as a resume would), its
/// signal mask, sigaltstack and full XSAVE state. So from the first `call` to `close()` the
/// task is at every instant either stopped by cryo, or on its way back to where it was, and
/// what stays behind in a task whose cryo died is one page of code (CRIU's parasite leaves its
/// blob the same way).
public final class ReturnTrampoline {
    let remote: Remote
    let code: UInt64
    let frame: UInt64
    /// Syscall stops on the way home: entry and exit of each close, the munmap, rt_sigreturn.
    let homeStops: Int
    private(set) var options: Ptrace.Options
    private var closed = false
    /// Where the task's own call loop starts (TrampolineLoop), if it was given one.
    var loopEntry: UInt64?
    /// The task runs the loop (PTRACE_CONT), not stopped by us.
    var looping = false
    private let log = Logger(label: "remote")

    static let ucFlags: UInt64 = 0x1 | 0x2 | 0x4  // UC_FP_XSTATE, UC_SIGCONTEXT_SS, UC_STRICT_RESTORE_SS
    static let magic1: UInt32 = 0x4650_5853, magic2: UInt32 = 0x4650_5845

    /// Whether the task can take a trampoline: a shadow stack would refuse the sigreturn.
    public static func usable(pid: Int32, proc: ProcReader) -> Bool {
        guard let st = try? proc.status(pid: pid) else { return false }
        return !(st.fields["x86_Thread_features"] ?? "").contains("shstk")
    }

    /// `fds` and `scratch` are what the task holds for the caller: the way back closes and
    /// unmaps them.
    public init(remote: Remote, fds: [UInt32], scratch: (addr: UInt64, size: Int), loop: TrampolineLoop.Spec? = nil) throws {
        self.homeStops = 2 * (fds.count + 2)
        self.remote = remote
        let tid = remote.tid
        try remote.syscall(.sigaltstack, 0, scratch.addr)
        let ss = try remote.readMemory(at: scratch.addr, count: 24)
        var xs = try Ptrace.getXState(tid)
        guard xs.count >= 576 else { throw RemoteError.didNotExecute(tid: tid, call: "xstate (\(xs.count) bytes)", rip: 0) }
        // The signal-frame footer (fpx_sw_bytes) the kernel checks before it restores the
        // extended state; ptrace's copy usually carries it already.
        let features = xs.u32(at: 464) == ReturnTrampoline.magic1 ? xs.u64(at: 472) : xs.u64(at: 512)
        ReturnTrampoline.put32(&xs, 464, ReturnTrampoline.magic1)
        ReturnTrampoline.put32(&xs, 468, UInt32(xs.count + 4))
        ReturnTrampoline.put64(&xs, 472, features)
        ReturnTrampoline.put32(&xs, 480, UInt32(xs.count))
        xs.putU32(ReturnTrampoline.magic2)

        let saved = remote.savedRegs
        let fx = (saved.rsp &- 128 &- UInt64(xs.count)) & ~63
        let uc = (fx &- 512) & ~15
        var r = saved
        // What the kernel does to a task it resumes inside an interrupted syscall.
        if Int64(bitPattern: r.orig_rax) >= 0 {
            switch Int64(bitPattern: r.rax) {
            case -512, -513, -514: r.rax = r.orig_rax; r.rip &-= 2  // ERESTARTSYS, _NOINTR, _NOHAND
            case -516: r.rax = UInt64(SyscallNumber.restartSyscall.rawValue); r.rip &-= 2  // ERESTART_RESTARTBLOCK
            default: break
            }
        }
        var f: [UInt8] = []
        f.reserveCapacity(Int(fx - uc) + xs.count)
        f.putU64(ReturnTrampoline.ucFlags)
        f.putU64(0)  // uc_link
        f.append(contentsOf: ss)
        for v in [r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15, r.rdi, r.rsi, r.rbp, r.rbx, r.rdx, r.rax, r.rcx, r.rsp, r.rip, r.eflags] { f.putU64(v) }
        f.putU64((r.cs & 0xffff) | (r.gs & 0xffff) << 16 | (r.fs & 0xffff) << 32 | (r.ss & 0xffff) << 48)
        f.putU64(0); f.putU64(0); f.putU64(0); f.putU64(0)  // err, trapno, oldmask, cr2
        f.putU64(fx)
        for _ in 0..<8 { f.putU64(0) }
        f.putU64(remote.savedMask)
        f.append(contentsOf: [UInt8](repeating: 0, count: Int(fx - uc) - f.count))
        f.append(contentsOf: xs)
        try remote.writeMemory(f, at: uc)
        frame = uc

        code = try remote.syscall(.mmap, 0, 4096, UInt64(PROT_READ | PROT_EXEC), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
        var c: [UInt8] = [0x0f, 0x05]
        for fd in fds {
            c += [0xb8]; c.putU32(UInt32(SyscallNumber.close.rawValue))
            c += [0xbf]; c.putU32(fd)
            c += [0x0f, 0x05]
        }
        c += [0xb8]; c.putU32(UInt32(SyscallNumber.munmap.rawValue))
        c += [0x48, 0xbf]; c.putU64(scratch.addr)
        c += [0x48, 0xbe]; c.putU64(UInt64(scratch.size))
        c += [0x0f, 0x05]
        c += [0xb8]; c.putU32(UInt32(SyscallNumber.rtSigreturn.rawValue))
        c += [0x0f, 0x05]
        if let loop {
            loopEntry = code + UInt64(c.count)
            c += TrampolineLoop.code(loop, at: c.count)
        }
        while c.count % 8 != 0 { c.append(0xcc) }
        do {
            // POKEDATA writes through the page's lack of PROT_WRITE, as a debugger's breakpoint does.
            for i in stride(from: 0, to: c.count, by: 8) { try Ptrace.poke(tid, code + UInt64(i), Array(c[i..<i + 8]).u64(at: 0)) }
            try remote.park()
            options = [.suspendSeccomp, .traceSysGood]
            do { try Ptrace.setOptions(tid, options) } catch {
                options = [.traceSysGood]
                try Ptrace.setOptions(tid, options)
            }
        } catch {
            _ = try? remote.syscall(.munmap, code, 4096)
            throw error
        }
    }

    static func put32(_ b: inout [UInt8], _ o: Int, _ v: UInt32) { for i in 0..<4 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(i))) } }
    static func put64(_ b: inout [UInt8], _ o: Int, _ v: UInt64) { for i in 0..<8 { b[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }

    /// Runs `nr` in the task through the trampoline; the raw result (>= 0 or -errno). The task
    /// stays at the trampoline afterwards, so a cryo killed between calls still sends it home.
    public func call(_ nr: SyscallNumber, _ args: UInt64...) throws -> Int64 {
        precondition(!closed, "ReturnTrampoline used after close")
        try stopLoop()
        let tid = remote.tid
        var regs = remote.savedRegs
        regs.rax = UInt64(nr.rawValue)
        regs.orig_rax = UInt64(bitPattern: -1)
        let a = args + Array(repeating: 0, count: max(0, 6 - args.count))
        regs.rdi = a[0]; regs.rsi = a[1]; regs.rdx = a[2]
        regs.r10 = a[3]; regs.r8 = a[4]; regs.r9 = a[5]
        regs.rip = code
        regs.rsp = frame
        try Ptrace.setRegs(tid, regs)
        var stops = 0
        for _ in 0..<8 where stops < 2 {
            try Ptrace.resumeToSyscall(tid)
            let st = try WaitStatus.wait(tid)
            switch st {
            case .stopped(0x85, 0): stops += 1  // entry, then exit
            case .stopped(_, Ptrace.eventStop): continue  // a job-control trap left from seizing a stopped task
            default: throw RemoteError.unexpectedStop(tid: tid, status: st, call: "\(nr)")
            }
        }
        let after = try Ptrace.getRegs(tid)
        guard stops == 2, after.rip == code + 2 else { throw RemoteError.didNotExecute(tid: tid, call: "\(nr)", rip: after.rip) }
        return Int64(bitPattern: after.rax)
    }

    /// Sends the task home the way a dying cryo would (close, munmap, rt_sigreturn, each
    /// stopped at), so no instant of it is unsafe; then its exact registers, and the code page
    /// unmapped by one ordinary injected call.
    public func close() throws {
        guard !closed else { return }
        closed = true
        let tid = remote.tid
        defer { try? Ptrace.setOptions(tid, options.subtracting(.traceSysGood)) }
        do {
            try stopLoop()
            var regs = remote.savedRegs
            regs.orig_rax = UInt64(bitPattern: -1)
            regs.rip = code + 2
            regs.rsp = frame
            try Ptrace.setRegs(tid, regs)
            var stops = 0
            for _ in 0..<(homeStops + 6) where stops < homeStops {
                try Ptrace.resumeToSyscall(tid)
                let st = try WaitStatus.wait(tid)
                switch st {
                case .stopped(0x85, 0): stops += 1
                case .stopped(_, Ptrace.eventStop): continue
                default: throw RemoteError.unexpectedStop(tid: tid, status: st, call: "rt_sigreturn")
                }
            }
            guard stops == homeStops, try Ptrace.getRegs(tid).rsp == remote.savedRegs.rsp else {
                throw RemoteError.didNotExecute(tid: tid, call: "rt_sigreturn", rip: try Ptrace.getRegs(tid).rip)
            }
            remote.forgetScratch()
            // The interrupt first: from here a released task goes through the signal path, whose
            // restart logic needs the registers exactly as they were.
            try Ptrace.interrupt(tid)
            try Ptrace.setRegs(tid, remote.savedRegs)
            // rt_sigreturn gave the task its own mask; Remote's (all blocked) again for the last call.
            try Ptrace.setSigmask(tid, Remote.injectionMask)
            try Ptrace.cont(tid)
            var parked = false
            for _ in 0..<4 where !parked {
                let st = try WaitStatus.wait(tid)
                if case .stopped(_, Ptrace.eventStop) = st { parked = true; break }
                throw RemoteError.unexpectedStop(tid: tid, status: st, call: "park")
            }
        } catch {
            log.error("tid \(tid): the way back through the trampoline failed (\(error)); putting the registers back")
            try Ptrace.setRegs(tid, remote.savedRegs)
            try Ptrace.setSigmask(tid, Remote.injectionMask)
            try remote.syscall(.munmap, code, 4096)
            throw error
        }
        try remote.syscall(.munmap, code, 4096)
    }

    deinit {
        if !closed {
            do { try close() } catch { log.error("tid \(remote.tid): could not leave the return trampoline: \(error)") }
        }
    }
}
