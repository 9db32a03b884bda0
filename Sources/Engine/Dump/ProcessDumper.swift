import CKernel
import Foundation
import Glibc
import Logging

/// Dumps one frozen process: its task core, threads, memory, files, fs and ids.
struct ProcessDumper {
    let process: FrozenProcess
    let images: ImageDirectory
    let proc: ProcReader
    let files: FileTable
    let pagesID: Int
    let ids: Img_TaskKobjIdsEntry
    let shmem: SharedMemoryDumper
    let cow: CowMap
    let pages: PageTransport
    var incremental: IncrementalPlan? = nil
    /// Every thread's seccomp chain goes into one seccomp.img for the whole dump.
    var seccomp = SeccompImageBuilder()
    /// The process's set in cgroup.img (0: none recorded).
    var cgSet: UInt32 = 0
    /// Where the threads' cores wait for the end of the dump (signal queues are read then).
    let cores: CoreImages
    /// Pids as the images name them (inside the tree's pid namespace).
    var pids = PidMap()
    let log = Logger(label: "dump")

    var pid: Int32 { process.pid }

    /// Writes everything but the pages, and returns their copy job.
    func dump(pstree: Img_PstreeEntry) throws -> PageJob {
        var timer = PhaseTimer()
        func mark(_ s: String) { timer.mark(s) }
        defer {
            mark("end")
            log.debug("pid \(pid) timing: \(timer.summary)")
        }
        let maps = try proc.maps(pid: pid)
        let leader = try Remote(tid: pid, maps: maps)
        defer { try? leader.finish() }
        let status = try proc.status(pid: pid)
        let stat = try proc.stat(pid: pid)
        mark("proc")

        // Everything that reads through the leader first, then the other threads.
        var tc = try taskCore(leader: leader, status: status, stat: stat)
        let brk = try leader.syscall(.brk, 0)
        // Process-wide prctl values, read while we are inside anyway.
        let dumpable = try leader.syscall(.prctl, 3 /* PR_GET_DUMPABLE */)
        let thpDisabled = try leader.syscall(.prctl, 42 /* PR_GET_THP_DISABLE */)
        let secbits = try leader.syscall(.prctl, 27 /* PR_GET_SECUREBITS */)
        // MEMBARRIER_CMD_GET_REGISTRATIONS (6.3+): without it they could be lost unseen.
        let barriers = try leader.rawSyscall(SyscallNumber.membarrier.rawValue, [1 << 9, 0, 0])
        guard barriers >= 0 else { throw DumpError.unsupported(pid: pid, what: "membarrier registrations (MEMBARRIER_CMD_GET_REGISTRATIONS: errno \(-barriers))") }
        tc.membarrierRegistrationMask = UInt32(truncatingIfNeeded: barriers)
        // PR_GET_MDWE: EINVAL before 6.3, where nothing can have set it.
        let mdwe = try leader.rawSyscall(SyscallNumber.prctl.rawValue, [66, 0, 0, 0, 0])
        if mdwe > 0 { tc.mdwe = UInt32(truncatingIfNeeded: mdwe) }
        let sigacts = tc.sigactions
        tc.sigactions = []
        mark("taskcore")
        let (leaderInfo, leaderCore) = try ThreadDumper.dump(tid: pid, remote: leader)
        var threadCores: [(Int32, Img_ThreadInfoX86, Img_ThreadCoreEntry)] = [(pid, leaderInfo, leaderCore)]
        // Credentials, securebits, no_new_privs and seccomp belong to each thread.
        var threadSecbits: [Int32: UInt32] = [pid: UInt32(truncatingIfNeeded: secbits)]
        for tid in process.threads where tid != pid {
            let r = try Remote(tid: tid, maps: maps)
            defer { try? r.finish() }
            let (i, c) = try ThreadDumper.dump(tid: tid, remote: r)
            threadSecbits[tid] = UInt32(truncatingIfNeeded: try r.syscall(.prctl, 27 /* PR_GET_SECUREBITS */))
            threadCores.append((tid, i, c))
        }
        let numaPolicies = try NumaPolicy.readMappings(maps, remote: leader)
        try leader.finish()
        mark("threads")

        for (tid, info, var tcore) in threadCores {
            let tstatus = tid == pid ? status : try proc.taskStatus(pid: pid, tid: tid)
            tcore.creds = try credentials(status: tstatus, secbits: threadSecbits[tid] ?? 0)
            let sc = try SeccompReader.read(pid: pid, tid: tid, status: tstatus)
            if sc.mode != .disabled { tcore.seccompMode = sc.mode }
            if !sc.chain.isEmpty { tcore.seccompFilter = seccomp.add(sc.chain) }
            tcore.comm = (try? proc.taskComm(pid: pid, tid: tid)) ?? stat.comm
            var core = Img_CoreEntry()
            core.mtype = .x8664
            core.threadInfo = info
            core.threadCore = tcore
            if tid == pid { core.tc = tc }
            cores.add(pid: pid, tid: tid, imageID: pids.image(tid), core: core)
        }
        try images.write(.sigacts, id: Int(pids.image(pid)), entries: sigacts)
        mark("cores")

        var memory = MemoryDumper(pid: pid, images: images, files: files, proc: proc, shmem: shmem, pages: pages, incremental: incremental)
        memory.cow = cow
        var (mm, job) = try memory.dump(maps: maps, stat: stat, brk: brk, pagesID: pagesID)
        mm.dumpable = Int32(truncatingIfNeeded: dumpable)
        mm.thpDisabled = thpDisabled != 0
        for i in mm.vmas.indices { if let (mode, nodes) = numaPolicies[mm.vmas[i].start] { mm.vmas[i].mempolicyMode = mode; mm.vmas[i].mempolicyNodes = nodes } }
        try images.write(.mm, id: Int(pids.image(pid)), entry: mm)
        mark("memory")

        try files.dumpFds(pid: pid, proc: proc, images: images, imageID: pids.image(pid))
        var fs = Img_FsEntry()
        fs.cwdID = try files.register(path: try proc.cwd(pid: pid), pid: pid, flags: O_RDONLY | O_DIRECTORY)
        fs.rootID = try files.register(path: try proc.root(pid: pid), pid: pid, flags: O_RDONLY | O_DIRECTORY)
        fs.umask = status.umask
        try images.write(.fs, id: Int(pids.image(pid)), entry: fs)
        try images.write(.ids, id: Int(pids.image(pid)), entry: ids)
        return job
    }

    func taskCore(leader: Remote, status: ProcStatus, stat: ProcStat) throws -> Img_TaskCoreEntry {
        var tc = Img_TaskCoreEntry()
        tc.taskState = process.wasStopped ? TaskState.stopped.rawValue : TaskState.alive.rawValue
        if process.wasStopped { tc.stopSigno = UInt32(process.stopSignal) }
        tc.exitCode = 0
        tc.personality = try proc.personality(pid: pid)
        tc.flags = stat.flags
        tc.blkSigset = leader.savedMask
        tc.comm = stat.comm
        tc.umask = status.umask
        tc.noNewPrivs = status.noNewPrivs
        if cgSet != 0 { tc.cgSet = cgSet }
        let scratch = try leader.scratch()

        var timers = Img_TaskTimersEntry()
        for which in 0..<3 {
            try leader.syscall(.getitimer, UInt64(which), scratch)
            let v = try leader.readMemory(at: scratch, count: 32)
            var e = Img_ItimerEntry()
            e.isec = v.u64(at: 0); e.iusec = v.u64(at: 8); e.vsec = v.u64(at: 16); e.vusec = v.u64(at: 24)
            switch which { case 0: timers.real = e; case 1: timers.virt = e; default: timers.prof = e }
        }
        // POSIX timers: /proc names them, timer_gettime inside the task reads their time.
        for t in try proc.posixTimers(pid: pid) {
            try leader.syscall(.timerGettime, UInt64(UInt32(bitPattern: t.id)), scratch)
            let v = try leader.readMemory(at: scratch, count: 32)
            var e = Img_PosixTimerEntry()
            e.itID = UInt32(bitPattern: t.id); e.clockID = UInt32(bitPattern: t.clock)
            e.siSigno = UInt32(bitPattern: t.signal); e.itSigevNotify = UInt32(bitPattern: t.notify)
            e.sivalPtr = t.sivalPtr
            e.overrun = UInt32(truncatingIfNeeded: try leader.syscall(.timerGetoverrun, UInt64(UInt32(bitPattern: t.id))))
            e.isec = v.u64(at: 0); e.insec = v.u64(at: 8); e.vsec = v.u64(at: 16); e.vnsec = v.u64(at: 24)
            if t.notify & 4 != 0 { e.notifyThreadID = pids.image(t.notifyTid) }
            timers.posix.append(e)
        }
        tc.timers = timers

        var rl = Img_TaskRlimitsEntry()
        // prlimit64 on a task of another uid needs CAP_SYS_RESOURCE; /proc shows the same values.
        var limits: [(cur: UInt64, max: UInt64)] = []
        for res in 0..<16 {
            var lim = (cur: UInt64(0), max: UInt64(0))
            let rc = withUnsafeMutablePointer(to: &lim) { ck_syscall6(SyscallNumber.prlimit64.rawValue, Int(pid), res, 0, Int(bitPattern: $0), 0, 0) }
            if rc < 0 && ck_errno() == EPERM { limits = try proc.limits(pid: pid); break }
            guard rc == 0 else { throw SystemCallError(call: "prlimit64", errno: ck_errno(), context: "pid \(pid) rlimit \(res)") }
            limits.append(lim)
        }
        for lim in limits {
            var e = Img_RlimitEntry()
            e.cur = lim.cur; e.max = lim.max
            rl.rlimits.append(e)
        }
        tc.rlimits = rl

        for sig in 1...64 {
            var e = Img_SaEntry()
            let bit = UInt64(1) << UInt64(sig - 1)
            // A signal neither caught nor ignored has the default action; only SIGCHLD's flags
            // (SA_NOCLDSTOP, SA_NOCLDWAIT) change what a default action does. One injected
            // call less per such signal.
            if sig == SIGKILL || sig == SIGSTOP || (status.sigCgt & bit == 0 && status.sigIgn & bit == 0 && sig != SIGCHLD) {
                e.sigaction = 0; e.flags = 0; e.restorer = 0; e.mask = 0
            } else {
                try leader.syscall(.rtSigaction, UInt64(sig), 0, scratch, 8)
                let a = try leader.readMemory(at: scratch, count: 32)
                e.sigaction = a.u64(at: 0); e.flags = a.u64(at: 8); e.restorer = a.u64(at: 16); e.mask = a.u64(at: 24)
            }
            tc.sigactions.append(e)
        }

        // The shared signal queue is read last of all, by CoreImages.
        try leader.syscall(.prctl, 37, scratch)
        tc.childSubreaper = try leader.readU64(scratch) & 0xffff_ffff != 0
        tc.loginuid = (try? proc.loginuid(pid: pid)) ?? UInt32.max
        // Written back by the task itself, so as it sees it (unset stays unset).
        if tc.loginuid != UInt32.max, let m = try UserIdMaps.of(pid: pid, proc: proc) {
            guard let v = m.uidInside(tc.loginuid) else { throw DumpError.unsupported(pid: pid, what: "loginuid \(tc.loginuid), not in its user namespace's uid map") }
            tc.loginuid = v
        }
        tc.oomScoreAdj = (try? proc.oomScoreAdj(pid: pid)) ?? 0
        tc.coredumpFilter = try proc.coredumpFilter(pid: pid)
        return tc
    }

    func credentials(status: ProcStatus, secbits: UInt32) throws -> Img_CredsEntry {
        var c = Img_CredsEntry()
        let u = status.uids, g = status.gids
        guard u.count == 4, g.count == 4 else { throw DumpError.unsupported(pid: pid, what: "credentials in /proc status") }
        c.uid = u[0]; c.euid = u[1]; c.suid = u[2]; c.fsuid = u[3]
        c.gid = g[0]; c.egid = g[1]; c.sgid = g[2]; c.fsgid = g[3]
        func split(_ v: UInt64) -> [UInt32] { [UInt32(truncatingIfNeeded: v), UInt32(truncatingIfNeeded: v >> 32)] }
        c.capInh = split(status.capInh); c.capPrm = split(status.capPrm); c.capEff = split(status.capEff)
        c.capBnd = split(status.capBnd); c.capAmb = split(status.capAmb)
        c.groups = status.groups
        c.secbits = secbits
        c.noNewPrivs = status.noNewPrivs ? 1 : 0
        if let m = try UserIdMaps.of(pid: pid, proc: proc) { c = try m.inside(c, pid: pid) }
        return c
    }
}
