import Foundation
import Glibc

/// What one thread gets of seccomp at the end of its restore.
enum SeccompInstall {
    case none
    case strict
    /// The chain, oldest first. `tsync`: installed once in the leader and synchronised to
    /// every thread of the process, which then share the kernel's filters as they did.
    case filters([SeccompFilterProgram], tsync: Bool)
    /// Another thread's TSYNC gives it the filters.
    case synced(count: Int)
}

/// Credentials, securebits, no_new_privs and seccomp, per thread (docs/SECURITY-STATE.md).
extension Restorer {
    /// Each thread's seccomp install, from seccomp.img and the cores, checked before anything
    /// is created. Threads of a process with one identical chain get it through TSYNC.
    func seccompPlan(_ images: ImageDirectory, plans: [Plan]) throws -> [Int32: SeccompInstall] {
        var out: [Int32: SeccompInstall] = [:]
        var chains: SeccompChains?
        for p in plans where !p.isZombie {
            var byTid: [Int32: (UInt32?, [SeccompFilterProgram])] = [:]
            for (tid, core) in p.cores {
                let th = core.threadCore
                switch th.hasSeccompMode ? th.seccompMode : .disabled {
                case .disabled: out[tid] = SeccompInstall.none
                case .strict: out[tid] = .strict
                case .filter:
                    guard th.hasSeccompFilter else {
                        throw ImageError.inconsistent(file: images.filePath(.core, Int(tid)), offset: 0, reason: "seccomp filter mode without a filter")
                    }
                    if chains == nil {
                        guard images.exists(.seccomp) else {
                            throw ImageError.inconsistent(file: images.filePath(.seccomp), offset: 0, reason: "tid \(tid) has seccomp filters but the image is missing")
                        }
                        chains = SeccompChains(entry: try images.readOne(.seccomp, as: Img_SeccompEntry.self))
                    }
                    let c = try chains!.chain(from: th.seccompFilter, tid: tid, file: images.filePath(.seccomp))
                    byTid[tid] = (th.seccompFilter, c)
                    out[tid] = .filters(c, tsync: false)
                }
            }
            // One chain in every thread: the same kernel filters for all, as TSYNC or a
            // filter installed before the threads were made leaves them.
            let starts = Set(byTid.values.map(\.0))
            if p.cores.count > 1, byTid.count == p.cores.count, starts.count == 1, let c = byTid[p.pid]?.1 {
                for tid in p.cores.keys { out[tid] = .synced(count: c.count) }
                out[p.pid] = .filters(c, tsync: true)
            }
        }
        return out
    }

    /// The order matters, each step needs what a later one drops: NO_SETUID_FIXUP keeps the
    /// capabilities through the uid change; inheritable and ambient are raised while cryo's
    /// full permitted set is still there (and before the bounding set shrinks); securebits
    /// and the bounding set need CAP_SETPCAP, seccomp CAP_SYS_ADMIN; the last capset drops
    /// to the dumped sets, and no_new_privs comes last.
    func restoreCreds(_ t: RestoreTarget, _ c: Img_CredsEntry, seccomp: SeccompInstall, noNewPrivs: Bool) throws {
        let r = t.remote
        func step(_ what: String, _ body: () throws -> Void) throws {
            do { try body() } catch { throw SecurityError.restore(tid: t.pid, reason: "\(what): \(error)") }
        }
        var g: [UInt8] = []
        for x in c.groups { g.putU32(x) }
        try step("setgroups") { try r.syscall(.setgroups, UInt64(c.groups.count), c.groups.isEmpty ? 0 : try t.put(g)) }
        try step("securebits NO_SETUID_FIXUP") { try r.syscall(.prctl, 28 /* PR_SET_SECUREBITS */, 1 << 2) }
        try step("setresgid \(c.gid)/\(c.egid)/\(c.sgid)") { try r.syscall(.setresgid, UInt64(c.gid), UInt64(c.egid), UInt64(c.sgid)) }
        try r.syscall(.setfsgid, UInt64(c.fsgid))
        try step("setresuid \(c.uid)/\(c.euid)/\(c.suid)") { try r.syscall(.setresuid, UInt64(c.uid), UInt64(c.euid), UInt64(c.suid)) }
        try r.syscall(.setfsuid, UInt64(c.fsuid))
        let full = c.capEff.count == 2 && c.capPrm.count == 2 && c.capInh.count == 2
        func capset(eff: [UInt32], prm: [UInt32], inh: [UInt32]) throws {
            var b: [UInt8] = []
            b.putU32(0x2008_0522); b.putU32(0)  // _LINUX_CAPABILITY_VERSION_3, this task
            for i in 0..<2 { b.putU32(eff[i]); b.putU32(prm[i]); b.putU32(inh[i]) }
            let hdr = try t.put(b)
            try r.syscall(.capset, hdr, hdr + 8)
        }
        if full {
            let now = try ProcReader().taskStatus(pid: t.pid, tid: t.pid)
            let all = [UInt32(truncatingIfNeeded: now.capPrm), UInt32(truncatingIfNeeded: now.capPrm >> 32)]
            try step("capset (inheritable)") { try capset(eff: all, prm: all, inh: c.capInh) }
        }
        if c.capAmb.count == 2 {
            let amb = UInt64(c.capAmb[0]) | UInt64(c.capAmb[1]) << 32
            try r.syscall(.prctl, 47 /* PR_CAP_AMBIENT */, 4 /* CLEAR_ALL */, 0, 0, 0)
            for cap in 0..<64 where amb & (UInt64(1) << UInt64(cap)) != 0 {
                try step("ambient capability \(cap)") { try r.syscall(.prctl, 47, 2 /* RAISE */, UInt64(cap), 0, 0) }
            }
        }
        if c.capBnd.count == 2 {
            let bnd = UInt64(c.capBnd[0]) | UInt64(c.capBnd[1]) << 32
            let last = UInt64((try? ProcReader().readText("/proc/sys/kernel/cap_last_cap").trimmingCharacters(in: .whitespacesAndNewlines)).flatMap { UInt64($0) } ?? 40)
            for cap in 0...last where bnd & (1 << cap) == 0 {
                try step("dropping capability \(cap) from the bounding set") { try r.syscall(.prctl, 24 /* PR_CAPBSET_DROP */, cap) }
            }
        }
        try step("securebits 0x\(String(c.secbits, radix: 16))") { try r.syscall(.prctl, 28, UInt64(c.secbits)) }
        try installSeccomp(t, seccomp)
        if full { try step("capset") { try capset(eff: c.capEff, prm: c.capPrm, inh: c.capInh) } }
        if noNewPrivs { try r.syscall(.prctl, 38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0) }
    }

    /// Filters oldest first, each as the task's own seccomp(2) call. Later injected calls
    /// still run: the tracer holds PTRACE_O_SUSPEND_SECCOMP.
    func installSeccomp(_ t: RestoreTarget, _ install: SeccompInstall) throws {
        let r = t.remote
        switch install {
        case .none, .synced: return
        case .strict, .filters: break
        }
        do { try Ptrace.setOptions(t.pid, [.suspendSeccomp]) } catch {
            throw SecurityError.restore(tid: t.pid, reason: "seccomp needs PTRACE_O_SUSPEND_SECCOMP (CONFIG_CHECKPOINT_RESTORE, CAP_SYS_ADMIN): \(error)")
        }
        switch install {
        case .strict:
            do { try r.syscall(.prctl, 22 /* PR_SET_SECCOMP */, 1 /* SECCOMP_MODE_STRICT */) } catch {
                throw SecurityError.restore(tid: t.pid, reason: "seccomp strict mode: \(error)")
            }
        case .filters(let chain, let tsync):
            for (i, f) in chain.enumerated() {
                let size = UInt64((16 + f.program.count + 4095) & ~4095)
                let at = try r.syscall(.mmap, 0, size, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0)
                defer { _ = try? r.syscall(.munmap, at, size) }
                var b: [UInt8] = []
                b.putU64(UInt64(f.program.count / 8))  // unsigned short len, then padding
                b.putU64(at + 16)
                try r.writeMemory(b + f.program, at: at)
                let flags = f.flags | (tsync ? SeccompFilterProgram.flagTsync : 0)
                let got: UInt64
                do { got = try r.syscall(.seccomp, 1 /* SECCOMP_SET_MODE_FILTER */, UInt64(flags), at) } catch {
                    throw SecurityError.restore(tid: t.pid, reason: "seccomp filter \(i) of \(chain.count) (flags 0x\(String(flags, radix: 16))): \(error)")
                }
                if got != 0 { throw SecurityError.restore(tid: t.pid, reason: "seccomp filter \(i): TSYNC failed in thread \(got)") }
            }
        case .none, .synced: break
        }
    }

    /// Reads back what the kernel now holds for each thread: a step it took differently
    /// fails the restore, named, instead of going unnoticed.
    func verifySecurity(pid: Int32, tid: Int32, core: Img_CoreEntry, seccomp: SeccompInstall, noNewPrivs: Bool) throws {
        let s = try ProcReader().taskStatus(pid: pid, tid: tid)
        let c = core.threadCore.creds
        func u64(_ v: [UInt32]) -> UInt64? { v.count == 2 ? UInt64(v[0]) | UInt64(v[1]) << 32 : nil }
        var wrong: [String] = []
        // In a user namespace of its own: compared as the task sees them, as the image holds them.
        let users = try UserIdMaps.of(pid: pid, proc: ProcReader())
        let uids = users.map { m in s.uids.map { m.uidInside($0) ?? UInt32.max } } ?? s.uids
        let gids = users.map { m in s.gids.map { m.gidInside($0) ?? UInt32.max } } ?? s.gids
        if uids != [c.uid, c.euid, c.suid, c.fsuid] { wrong.append("uids \(uids)") }
        if gids != [c.gid, c.egid, c.sgid, c.fsgid] { wrong.append("gids \(gids)") }
        for (name, got, want) in [("CapInh", s.capInh, u64(c.capInh)), ("CapPrm", s.capPrm, u64(c.capPrm)), ("CapEff", s.capEff, u64(c.capEff)),
                                  ("CapBnd", s.capBnd, u64(c.capBnd)), ("CapAmb", s.capAmb, u64(c.capAmb))] {
            if let want, got != want { wrong.append("\(name) \(String(got, radix: 16)), not \(String(want, radix: 16))") }
        }
        if s.noNewPrivs != noNewPrivs { wrong.append("NoNewPrivs \(s.noNewPrivs)") }
        let (mode, count): (Int32, Int) = switch seccomp {
        case .none: (0, 0)
        case .strict: (1, 0)
        case .filters(let f, _): (2, f.count)
        case .synced(let n): (2, n)
        }
        if s.seccompMode != mode || (mode == 2 && Int(s.seccompFilters) != count) {
            wrong.append("seccomp mode \(s.seccompMode) with \(s.seccompFilters) filter(s), not mode \(mode) with \(count)")
        }
        if !wrong.isEmpty { throw SecurityError.restore(tid: tid, reason: "security state came back wrong: " + wrong.joined(separator: "; ")) }
    }
}

extension Restorer {
    /// CRIU keeps it per thread in the creds; cryo's older images had the leader's only.
    func noNewPrivs(_ p: Plan, tid: Int32) -> Bool {
        let c = p.cores[tid]!.threadCore.creds
        return c.hasNoNewPrivs ? c.noNewPrivs != 0 : p.cores[p.pid]!.tc.noNewPrivs
    }
}
