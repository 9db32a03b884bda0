import CKernel
import Glibc

/// Many vmsplices per wake-up, with no ptrace stop between them. ReturnTrampoline.call costs
/// two syscall stops per injected call, each a round trip through the scheduler; a 1 GiB
/// dump through 1 MiB pipes paid 2048 of them. Here the task runs a loop of ours (PTRACE_CONT,
/// no stops at all): it vmsplices every entry of a table cryo wrote into its scratch page,
/// each into its own pipe, writes one byte to an "ack" pipe, and blocks reading one byte from
/// a "go" pipe; then it starts over with the table cryo rewrote meanwhile. Two pipe wake-ups
/// per batch instead of two ptrace stops per pipeful.
///
/// Safe when cryo dies at any instant, as the rest of the trampoline: the task holds every
/// pipe end but the go pipe's write end (so nothing it writes can raise SIGPIPE), cryo holds
/// that one alone, so the task's read returns 0 once cryo is gone and the loop jumps to the
/// trampoline's way home (close the pipes, unmap the scratch page, rt_sigreturn). Signals
/// stay blocked as for every injected call (Remote.injectionMask), and seccomp is suspended
/// (no loop without PTRACE_O_SUSPEND_SECCOMP: a filtered read would send the task home
/// while cryo still counts on it).
///
/// Table at `table`: u64 slot for the go byte, u64 count, then per entry
/// {u64 fd, u64 iovecs, u64 count, i64 result (vmsplice's, written by the task)}.
public enum TrampolineLoop {
    public struct Spec {
        public var ackWrite: UInt32
        public var goRead: UInt32
        public var table: UInt64
        public init(ackWrite: UInt32, goRead: UInt32, table: UInt64) { self.ackWrite = ackWrite; self.goRead = goRead; self.table = table }
    }
    public static let headerBytes = 16
    public static let entryBytes = 32

    /// x86-64 code of the loop, placed at `offset` in the trampoline page (whose way home
    /// starts at offset 2).
    static func code(_ s: Spec, at offset: Int) -> [UInt8] {
        var c: [UInt8] = [0x49, 0xbc]; c.putU64(s.table)           // movabs r12, table
        let top = c.count
        c += [0x4d, 0x8b, 0x6c, 0x24, 0x08]                         // mov r13, [r12+8]
        c += [0x4d, 0x8d, 0x74, 0x24, 0x10]                         // lea r14, [r12+16]
        let next = c.count
        c += [0x4d, 0x85, 0xed]                                     // test r13, r13
        c += [0x74, 0]; let jzAt = c.count - 1                      // jz done
        c += [0xb8]; c.putU32(UInt32(SyscallNumber.vmsplice.rawValue))  // mov eax, vmsplice
        c += [0x49, 0x8b, 0x3e]                                     // mov rdi, [r14]
        c += [0x49, 0x8b, 0x76, 0x08]                               // mov rsi, [r14+8]
        c += [0x49, 0x8b, 0x56, 0x10]                               // mov rdx, [r14+16]
        c += [0x41, 0xba, 0x02, 0, 0, 0]                            // mov r10d, SPLICE_F_NONBLOCK
        c += [0x0f, 0x05]                                           // syscall
        c += [0x49, 0x89, 0x46, 0x18]                               // mov [r14+24], rax
        c += [0x49, 0x83, 0xc6, 0x20]                               // add r14, 32
        c += [0x49, 0xff, 0xcd]                                     // dec r13
        c += [0xeb, UInt8(bitPattern: Int8(next - (c.count + 2)))]  // jmp next
        c[jzAt] = UInt8(c.count - (jzAt + 1))
        c += [0xb8]; c.putU32(UInt32(SyscallNumber.write.rawValue))  // write(ack, r12, 1)
        c += [0xbf]; c.putU32(s.ackWrite)
        c += [0x4c, 0x89, 0xe6]                                     // mov rsi, r12
        c += [0xba, 1, 0, 0, 0]
        c += [0x0f, 0x05]
        c += [0x31, 0xc0]                                           // read(go, r12, 1)
        c += [0xbf]; c.putU32(s.goRead)
        c += [0x4c, 0x89, 0xe6]
        c += [0xba, 1, 0, 0, 0]
        c += [0x0f, 0x05]
        c += [0x48, 0x83, 0xf8, 0x01]                               // cmp rax, 1
        c += [0x75, 0x02]                                           // jne home (past the next jmp)
        c += [0xeb, UInt8(bitPattern: Int8(top - (c.count + 2)))]   // jmp top
        let rel = Int32(2 - (offset + c.count + 5))
        c += [0xe9]; c.putU32(UInt32(bitPattern: rel))              // home: jmp trampoline+2
        return c
    }
}

extension ReturnTrampoline {
    /// Whether the task may run the loop: given one, and seccomp suspended.
    public var canLoop: Bool { loopEntry != nil && options.contains(.suspendSeccomp) }

    /// One pass of the loop over the table cryo wrote: starts the task on it (the first time)
    /// or sends the go byte, then waits for its ack. The task then blocks for the next go.
    public func runLoop(go: Int32, ack: Int32) throws {
        let tid = remote.tid
        if !looping {
            guard let entry = loopEntry else { throw RemoteError.didNotExecute(tid: tid, call: "vmsplice loop (none in the trampoline)", rip: 0) }
            var regs = remote.savedRegs
            regs.orig_rax = UInt64(bitPattern: -1)
            regs.rip = entry
            regs.rsp = frame
            try Ptrace.setRegs(tid, regs)
            try Ptrace.cont(tid)
            looping = true
        } else {
            var b: UInt8 = 1
            while Glibc.write(go, &b, 1) != 1 {
                if errno == EINTR { continue }
                throw SystemCallError(call: "write", errno: errno, context: "tid \(tid): the vmsplice loop's go pipe")
            }
        }
        while true {
            var pfd = pollfd(fd: ack, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, 100)
            if r > 0 {
                var b: UInt8 = 0
                let n = Glibc.read(ack, &b, 1)
                if n == 1 { return }
                if n < 0 && errno == EINTR { continue }
                looping = false
                throw RemoteError.didNotExecute(tid: tid, call: "vmsplice loop (the task's end of the ack pipe closed)", rip: 0)
            }
            if r < 0 && errno != EINTR { throw SystemCallError(call: "poll", errno: errno, context: "tid \(tid): the vmsplice loop's ack pipe") }
            // No answer yet: a task that stopped (a SIGSTOP) or died never will.
            let st = try WaitStatus.wait(tid, flags: __WALL | WNOHANG)
            if st != .other(0) { looping = false; throw RemoteError.unexpectedStop(tid: tid, status: st, call: "the vmsplice loop") }
        }
    }

    /// Takes the task out of the loop (blocked on the go pipe) into a ptrace stop, for the
    /// next injected call or the way home.
    func stopLoop() throws {
        guard looping else { return }
        looping = false
        let tid = remote.tid
        try Ptrace.interrupt(tid)
        let st = try WaitStatus.wait(tid)
        guard case .stopped(_, Ptrace.eventStop) = st else { throw RemoteError.unexpectedStop(tid: tid, status: st, call: "stopping the vmsplice loop") }
    }
}
