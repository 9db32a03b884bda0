import CKernel
import Glibc

/// Reads one thread's state through ptrace and injected syscalls into CRIU's thread entries.
enum ThreadDumper {
    /// The thread must be in a ptrace stop; `remote` runs inside it.
    static func dump(tid: Int32, remote: Remote) throws -> (info: Img_ThreadInfoX86, core: Img_ThreadCoreEntry) {
        let regs = remote.savedRegs
        var info = Img_ThreadInfoX86()
        info.gpregs = Img_UserX86RegsEntry(regs)
        info.fpregs = try fpregs(tid)
        let scratch = try remote.scratch()

        // clear_child_tid: only prctl(PR_GET_TID_ADDRESS) shows it.
        try remote.syscall(.prctl, 40, scratch)
        info.clearTidAddr_p = try remote.readU64(scratch)

        var core = Img_ThreadCoreEntry()
        var head: UInt64 = 0, len: Int = 0
        try withUnsafeMutablePointer(to: &head) { hp in
            try withUnsafeMutablePointer(to: &len) { lp in
                try Sys.call(.getRobustList, Int(tid), Int(bitPattern: hp), Int(bitPattern: lp), context: "tid \(tid)")
            }
        }
        core.futexRla = head
        core.futexRlaLen = UInt32(len)
        core.blkSigset = try Ptrace.getSigmask(tid)
        // remote blocks all signals while injecting; what counts is the saved mask.
        core.blkSigset = remote.savedMask

        try remote.syscall(.sigaltstack, 0, scratch)
        let ss = try remote.readMemory(at: scratch, count: 24)
        var sas = Img_ThreadSasEntry()
        sas.ssSp = ss.u64(at: 0)
        sas.ssFlags = UInt32(truncatingIfNeeded: ss.u64(at: 8) & 0xffff_ffff)
        sas.ssSize = ss.u64(at: 16)
        core.sas = sas

        let sched = try Scheduling.read(tid: tid)
        core.schedPolicy = sched.policy; core.schedPrio = sched.prio; core.schedNice = sched.nice; core.ioprio = sched.ioprio
        (core.timerslackNs, core.timerslackDefaultNs) = try TimerSlack.read(tid: tid, remote: remote, sched: sched)
        (core.mempolicyMode, core.mempolicyNodes) = try NumaPolicy.read(remote, at: scratch, address: nil)
        core.cpuAffinity = try CpuAffinity.dumped(tid: tid)

        try remote.syscall(.prctl, 2, scratch)
        core.pdeathSig = UInt32(truncatingIfNeeded: try remote.readU64(scratch) & 0xffff_ffff)

        // The signal queue is read last of all, by CoreImages.

        let rs = try Ptrace.rseqConfiguration(tid)
        var r = Img_RseqEntry()
        r.rseqAbiPointer = rs.pointer
        r.rseqAbiSize = rs.size
        r.signature = rs.signature
        core.rseqEntry = r
        return (info, core)
    }

    /// The legacy FXSAVE fields CRIU's schema has, plus the whole XSAVE area in cryo's field.
    static func fpregs(_ tid: Int32) throws -> Img_UserX86FpregsEntry {
        let x = try Ptrace.getXState(tid)
        var fp = Img_UserX86FpregsEntry()
        guard x.count >= 512 else { throw DumpError.unsupported(pid: tid, what: "xstate of \(x.count) bytes") }
        fp.cwd = UInt32(x.u16(at: 0)); fp.swd = UInt32(x.u16(at: 2)); fp.twd = UInt32(x.u16(at: 4)); fp.fop = UInt32(x.u16(at: 6))
        fp.rip = x.u64(at: 8); fp.rdp = x.u64(at: 16)
        fp.mxcsr = x.u32(at: 24); fp.mxcsrMask = x.u32(at: 28)
        fp.stSpace = (0..<32).map { x.u32(at: 32 + $0 * 4) }
        fp.xmmSpace = (0..<64).map { x.u32(at: 160 + $0 * 4) }
        fp.padding = (0..<24).map { x.u32(at: 416 + $0 * 4) }
        var xs = Img_UserX86XsaveEntry()
        xs.xstateBv = x.count >= 520 ? x.u64(at: 512) : 0
        xs.xsaveArea = Data(x)
        fp.xsave = xs
        return fp
    }
}

extension Remote {
    func readU64(_ addr: UInt64) throws -> UInt64 { try readMemory(at: addr, count: 8).u64(at: 0) }
}

extension Array where Element == UInt8 {
    func u16(at o: Int) -> UInt16 { UInt16(self[o]) | UInt16(self[o + 1]) << 8 }
    func u32(at o: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(self[o + $1]) << (8 * UInt32($1)) } }
    func u64(at o: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(self[o + $1]) << (8 * UInt64($1)) } }
}

extension Array where Element == UInt8 {
    mutating func putU64(_ v: UInt64) { for i in 0..<8 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
    mutating func putU32(_ v: UInt32) { for i in 0..<4 { append(UInt8(truncatingIfNeeded: v >> (8 * UInt32(i)))) } }
}

import Foundation
