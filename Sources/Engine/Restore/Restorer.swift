import CKernel
import Foundation
import Glibc
import Logging

/// `cryo restore`: recreate the process with its pid and rebuild it from outside, through
/// injected syscalls (DESIGN.md, "Restore: driven from outside"). If anything fails, the task
/// being built is killed: nothing is left behind.
public struct Restorer {
    public let request: RestoreRequest
    let log = Logger(label: "restore")
    public init(_ request: RestoreRequest) { self.request = request }

    /// Loaded and checked before anything is created.
    struct Plan {
        var pstree: Img_PstreeEntry
        var cores: [Int32: Img_CoreEntry]
        var mm: Img_MmEntry
        var pagemap: [Img_PagemapEntry]
        var pagesID: UInt32
        var files: [UInt32: Img_FileEntry]
        var fdinfo: [Img_FdinfoEntry]
        var fs: Img_FsEntry
        var sigacts: [Img_SaEntry]
        /// Every page to fill, resolved through the parent chain, files open.
        var pages: PageSources
    }

    /// Restores and returns the root pid (detached) or waits and returns its exit status.
    public func run() throws -> (pid: Int32, exitStatus: Int32?) {
        let images = try ImageDirectory(path: request.imagesDir)
        let plan = try load(images)
        let pid = Int32(plan.pstree.pid)
        try checkFiles(plan)
        let child = try create(pid: pid)
        do {
            try rebuild(child, plan: plan, images: images)
        } catch {
            kill(child, SIGKILL)
            var st: Int32 = 0
            waitpid(child, &st, __WALL)
            throw error
        }
        if let pf = request.pidfile {
            try? "\(pid)\n".write(toFile: pf, atomically: true, encoding: .utf8)
        }
        log.info("restored pid \(pid)")
        if request.detach { return (pid, nil) }
        var st: Int32 = 0
        while waitpid(pid, &st, 0) < 0 && errno == EINTR {}
        return (pid, st)
    }

    func load(_ images: ImageDirectory) throws -> Plan {
        try images.validateConsistency()
        let tree = try images.read(.pstree, as: Img_PstreeEntry.self)
        guard tree.count == 1, let p = tree.first else {
            throw RestoreError.unsupported("a tree of \(tree.count) processes")
        }
        guard p.threads.count == 1 else { throw RestoreError.unsupported("\(p.threads.count) threads in pid \(p.pid)") }
        let pid = Int(p.pid)
        var cores: [Int32: Img_CoreEntry] = [:]
        for t in p.threads { cores[Int32(t)] = try images.readOne(.core, id: Int(t), as: Img_CoreEntry.self) }
        guard let core = cores[Int32(p.pid)], core.hasTc, core.hasThreadInfo, core.mtype == .x8664 else {
            throw ImageError.inconsistent(file: images.filePath(.core, pid), offset: 0, reason: "no x86_64 task core")
        }
        let (pagesID, pagemap) = try images.readPagemap(pid: Int32(pid))
        var files: [UInt32: Img_FileEntry] = [:]
        for f in try images.read(.files, as: Img_FileEntry.self) { files[f.id] = f }
        let fdinfo = try images.read(.fdinfo, id: pid, as: Img_FdinfoEntry.self)
        for fi in fdinfo where files[fi.id] == nil {
            throw ImageError.inconsistent(file: images.filePath(.fdinfo, pid), offset: 0, reason: "fd \(fi.fd) names file id \(fi.id), not in files.img")
        }
        let mm = try images.readOne(.mm, id: pid, as: Img_MmEntry.self)
        for v in mm.vmas where v.status & VmaStatus.filePrivate != 0 && files[UInt32(truncatingIfNeeded: v.shmid)] == nil {
            throw ImageError.inconsistent(file: images.filePath(.mm, pid), offset: 0, reason: "mapping at 0x\(String(v.start, radix: 16)) names file id \(v.shmid), not in files.img")
        }
        let fs = try images.readOne(.fs, id: pid, as: Img_FsEntry.self)
        let sigacts = try images.read(.sigacts, id: pid, as: Img_SaEntry.self)
        let pages = try PageSources(images: images, pid: pid)
        return Plan(pstree: p, cores: cores, mm: mm, pagemap: pagemap, pagesID: pagesID, files: files,
                    fdinfo: fdinfo, fs: fs, sigacts: sigacts, pages: pages)
    }

    /// Every file the images name must be there, with the size it had.
    func checkFiles(_ plan: Plan) throws {
        for f in plan.files.values where f.hasReg {
            var st = stat()
            guard stat(f.reg.name, &st) == 0 else { throw RestoreError.fileMissing(path: f.reg.name, errno: errno) }
            if f.reg.hasSize && st.st_mode & S_IFMT == S_IFREG && UInt64(st.st_size) != f.reg.size {
                throw RestoreError.fileChanged(path: f.reg.name, expectedSize: f.reg.size, actualSize: UInt64(st.st_size))
            }
        }
    }

    /// A child with exactly `pid`, seized and stopped. A zombie still holding the pid (pid 1
    /// reaps late here) is waited for briefly.
    func create(pid: Int32) throws -> Int32 {
        let deadline = Date().addingTimeInterval(3)
        while true {
            let r = ck_clone3_stopped_child(pid, 0)
            if r > 0 {
                guard try TreeFreezer.seizeThread(r, log: log) != nil else {
                    throw RestoreError.create(pid: pid, errno: ESRCH)
                }
                return r
            }
            let e = -r
            guard e == EEXIST else { throw RestoreError.create(pid: pid, errno: e) }
            let st = try? ProcReader().stat(pid: pid)
            if let st, !st.isZombie { throw RestoreError.pidTaken(pid: pid, by: "\(st.comm) (state \(st.state))") }
            if Date() > deadline { throw RestoreError.pidTaken(pid: pid, by: st.map { "a zombie (\($0.comm))" } ?? "a process that did not go away") }
            usleep(10_000)
        }
    }

    func rebuild(_ pid: Int32, plan: Plan, images: ImageDirectory) throws {
        let proc = ProcReader()
        let remote = try Remote(tid: pid, maps: try proc.maps(pid: pid))
        let t = RestoreTarget(pid: pid, remote: remote)
        let core = plan.cores[pid]!

        // Drop what the child inherited from cryo: rseq registration, fds, then memory.
        if let rs = try? Ptrace.rseqConfiguration(pid), rs.pointer != 0 {
            try remote.syscall(.rseq, rs.pointer, UInt64(rs.size), 1 /* RSEQ_FLAG_UNREGISTER */, UInt64(rs.signature))
        }
        try remote.syscall(.closeRange, 0, UInt64(UInt32.max), 0)
        try AddressSpace(target: t, plan: plan, images: images, proc: proc).build()

        try restoreFiles(t, plan: plan)
        try restoreTask(t, plan: plan, core: core)
        try restoreCreds(t, core.threadCore.creds)
        try queueSignals(t, core: core)
        try restoreXState(t, core.threadInfo.fpregs)
        try remote.finish(registers: restartedRegisters(core.threadInfo.gpregs), sigmask: core.tc.blkSigset)
        try Ptrace.detach(pid)
    }

    /// A task dumped inside an interruptible syscall must re-enter it: the kernel would have
    /// done this on its way back to user space, but a new task was never in that syscall.
    /// -ERESTART_RESTARTBLOCK needs the kernel's restart block, which a new task lacks, so the
    /// call returns EINTR instead (CRIU does the same).
    func restartedRegisters(_ gp: Img_UserX86RegsEntry) -> user_regs_struct {
        var r = gp.userRegs
        let ax = Int64(bitPattern: r.rax)
        if Int64(bitPattern: r.orig_rax) >= 0 {
            switch ax {
            case -512, -513, -514:
                r.rax = r.orig_rax
                r.rip -= 2
            case -516:
                r.rax = UInt64(bitPattern: -Int64(EINTR))
            default: break
            }
        }
        return r
    }

    func restoreFiles(_ t: RestoreTarget, plan: Plan) throws {
        for fi in plan.fdinfo {
            guard let f = plan.files[fi.id], let kind = FdKinds.kind(for: f.type) else {
                throw RestoreError.unsupported("fd \(fi.fd) of type \(fi.type)")
            }
            let got = try kind.restore(f, in: t)
            let want = Int32(fi.fd)
            if got != want {
                try t.remote.syscall(.dup2, UInt64(got), UInt64(want))
                try t.remote.syscall(.close, UInt64(got))
            }
            if fi.flags & UInt32(O_CLOEXEC) != 0 {
                try t.remote.syscall(.fcntl, UInt64(want), UInt64(F_SETFD), UInt64(FD_CLOEXEC))
            }
        }
        guard let cwd = plan.files[plan.fs.cwdID], let root = plan.files[plan.fs.rootID] else {
            throw RestoreError.unsupported("fs image without cwd or root")
        }
        if root.reg.name != "/" {
            try t.remote.syscall(.chroot, try t.put(string: root.reg.name))
        }
        do { try t.remote.syscall(.chdir, try t.put(string: cwd.reg.name)) } catch {
            throw RestoreError.fileMissing(path: cwd.reg.name, errno: ENOENT)
        }
        try t.remote.syscall(.umask, UInt64(plan.fs.umask))
    }

    func restoreTask(_ t: RestoreTarget, plan: Plan, core: Img_CoreEntry) throws {
        let r = t.remote
        let tc = core.tc
        // Session and group: a session leader makes its own; otherwise it must share ours.
        let ps = plan.pstree
        if ps.sid == ps.pid {
            try r.syscall(.setsid)
        } else if Int32(ps.sid) != getsid(0) {
            throw RestoreError.unsupported("pid \(ps.pid) in session \(ps.sid), which is neither its own nor cryo's (\(getsid(0)))")
        } else if ps.pgid == ps.pid {
            try r.syscall(.setpgid, 0, 0)
        } else if Int32(ps.pgid) != getpgrp() {
            throw RestoreError.unsupported("pid \(ps.pid) in process group \(ps.pgid) of another process")
        }

        for (i, sa) in plan.sigacts.enumerated() {
            let sig = i + 1
            if sig == SIGKILL || sig == SIGSTOP { continue }
            var b: [UInt8] = []
            b.putU64(sa.sigaction); b.putU64(sa.flags); b.putU64(sa.restorer); b.putU64(sa.mask)
            try r.syscall(.rtSigaction, UInt64(sig), try t.put(b), 0, 8)
        }
        if tc.hasTimers {
            for (which, e) in [tc.timers.real, tc.timers.virt, tc.timers.prof].enumerated() {
                var b: [UInt8] = []
                b.putU64(e.isec); b.putU64(e.iusec); b.putU64(e.vsec); b.putU64(e.vusec)
                try r.syscall(.setitimer, UInt64(which), try t.put(b), 0)
            }
        }
        for (res, e) in tc.rlimits.rlimits.enumerated() {
            var lim = (cur: e.cur, max: e.max)
            let rc = withUnsafeMutablePointer(to: &lim) { ck_syscall6(SyscallNumber.prlimit64.rawValue, Int(t.pid), res, Int(bitPattern: $0), 0, 0, 0) }
            if rc < 0 { log.warning("pid \(t.pid): rlimit \(res) \(e.cur)/\(e.max): errno \(ck_errno())") }
        }
        try r.syscall(.personality, UInt64(tc.personality))
        try r.syscall(.prctl, 15 /* PR_SET_NAME */, try t.put(string: core.threadCore.hasComm ? core.threadCore.comm : tc.comm))
        if tc.childSubreaper { try r.syscall(.prctl, 36, 1) }
        let th = core.threadCore
        if th.pdeathSig != 0 { try r.syscall(.prctl, 1, UInt64(th.pdeathSig)) }
        try r.syscall(.setRobustList, th.futexRla, UInt64(th.futexRlaLen))
        try r.syscall(.setTidAddress, core.threadInfo.clearTidAddr_p)
        if th.hasSas {
            var b: [UInt8] = []
            b.putU64(th.sas.ssSp); b.putU64(UInt64(th.sas.ssFlags)); b.putU64(th.sas.ssSize)
            try r.syscall(.sigaltstack, try t.put(b), 0)
        }
        if th.hasRseqEntry && th.rseqEntry.rseqAbiPointer != 0 {
            try r.syscall(.rseq, th.rseqEntry.rseqAbiPointer, UInt64(th.rseqEntry.rseqAbiSize), 0, UInt64(th.rseqEntry.signature))
        }
        if plan.mm.hasDumpable { try r.syscall(.prctl, 4 /* PR_SET_DUMPABLE */, UInt64(max(0, plan.mm.dumpable))) }
    }

    func restoreCreds(_ t: RestoreTarget, _ c: Img_CredsEntry) throws {
        let r = t.remote
        var g: [UInt8] = []
        for x in c.groups { g.putU32(x) }
        try r.syscall(.setgroups, UInt64(c.groups.count), c.groups.isEmpty ? 0 : try t.put(g))
        try r.syscall(.setresgid, UInt64(c.gid), UInt64(c.egid), UInt64(c.sgid))
        try r.syscall(.setfsgid, UInt64(c.fsgid))
        if c.uid != 0 || c.euid != 0 || c.suid != 0 { try r.syscall(.prctl, 8 /* PR_SET_KEEPCAPS */, 1) }
        try r.syscall(.setresuid, UInt64(c.uid), UInt64(c.euid), UInt64(c.suid))
        try r.syscall(.setfsuid, UInt64(c.fsuid))
        // Bounding set and securebits need CAP_SETPCAP, so they go before capset may drop it.
        if c.capBnd.count == 2 {
            let bnd = UInt64(c.capBnd[0]) | UInt64(c.capBnd[1]) << 32
            let last = UInt64((try? ProcReader().readText("/proc/sys/kernel/cap_last_cap").trimmingCharacters(in: .whitespacesAndNewlines)).flatMap { UInt64($0) } ?? 40)
            for cap in 0...last where bnd & (1 << cap) == 0 {
                try r.syscall(.prctl, 24 /* PR_CAPBSET_DROP */, cap)
            }
        }
        try r.syscall(.prctl, 28 /* PR_SET_SECUREBITS */, UInt64(c.secbits))
        if c.capEff.count == 2 && c.capPrm.count == 2 && c.capInh.count == 2 {
            var b: [UInt8] = []
            b.putU32(0x2008_0522); b.putU32(0)  // _LINUX_CAPABILITY_VERSION_3, pid 0
            for i in 0..<2 { b.putU32(c.capEff[i]); b.putU32(c.capPrm[i]); b.putU32(c.capInh[i]) }
            let hdr = try t.put(b)
            try r.syscall(.capset, hdr, hdr + 8)
        }
        if c.capAmb.count == 2 {
            let amb = UInt64(c.capAmb[0]) | UInt64(c.capAmb[1]) << 32
            try r.syscall(.prctl, 47 /* PR_CAP_AMBIENT */, 4 /* CLEAR_ALL */, 0, 0, 0)
            for cap in 0..<64 where amb & (UInt64(1) << UInt64(cap)) != 0 {
                try r.syscall(.prctl, 47, 2 /* RAISE */, UInt64(cap), 0, 0)
            }
        }
    }

    /// Pending signals go back through the task itself (only a task may queue arbitrary
    /// siginfo to itself); every signal is blocked while we work, so none is delivered early.
    func queueSignals(_ t: RestoreTarget, core: Img_CoreEntry) throws {
        for s in core.tc.signalsS.signals {
            let info = [UInt8](s.siginfo)
            guard info.count == 128 else { continue }
            try t.remote.syscall(.rtSigqueueinfo, UInt64(t.pid), UInt64(info.u32(at: 0)), try t.put(info))
        }
        for s in core.threadCore.signalsP.signals {
            let info = [UInt8](s.siginfo)
            guard info.count == 128 else { continue }
            try t.remote.syscall(.rtTgsigqueueinfo, UInt64(t.pid), UInt64(t.pid), UInt64(info.u32(at: 0)), try t.put(info))
        }
        if core.tc.noNewPrivs { try t.remote.syscall(.prctl, 38, 1, 0, 0, 0) }
    }

    /// The XSAVE area goes back as it was read. A task that used AMX first needs permission
    /// for the tile state, or the kernel's buffer is too small for it.
    func restoreXState(_ t: RestoreTarget, _ fp: Img_UserX86FpregsEntry) throws {
        let area = [UInt8](fp.xsave.xsaveArea)
        guard !area.isEmpty else { return }
        var current = try Ptrace.getXState(t.pid)
        if area.count > current.count {
            _ = try? t.remote.syscall(.archPrctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)
            current = try Ptrace.getXState(t.pid)
        }
        if area.count == current.count {
            try Ptrace.setXState(t.pid, area)
        } else {
            // Keep what fits; components past the buffer are dropped from XSTATE_BV.
            var cut = Array(area.prefix(current.count))
            let bv = cut.u64(at: 512) & (current.u64(at: 512) | 0xff)
            for i in 0..<8 { cut[512 + i] = UInt8(truncatingIfNeeded: bv >> (8 * UInt64(i))) }
            try Ptrace.setXState(t.pid, cut)
        }
    }
}
