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
    let fillBuffers = FillBuffers()
    public init(_ request: RestoreRequest) { self.request = request }

    /// One process, loaded and checked before anything is created.
    struct Plan {
        var pstree: Img_PstreeEntry
        var cores: [Int32: Img_CoreEntry]
        var ids: Img_TaskKobjIdsEntry
        var isZombie: Bool
        var mm: Img_MmEntry
        var pagemap: [Img_PagemapEntry]
        var pagesID: UInt32
        var files: [UInt32: Img_FileEntry]
        var fdinfo: [Img_FdinfoEntry]
        var fs: Img_FsEntry
        var sigacts: [Img_SaEntry]
        /// Every page to fill, resolved through the parent chain, files open (nil for zombies).
        var pages: PageSources?
        var pid: Int32 { Int32(pstree.pid) }
        var ppid: Int32 { Int32(pstree.ppid) }
    }

    /// The tasks made so far, for the final stage and for cleaning up after a failure.
    final class Built {
        var order: [Int32] = []            // processes, in creation order
        var targets: [Int32: [RestoreTarget]] = [:]  // per process: leader first, then threads
        var zombies: Set<Int32> = []
        var groupHelpers: [GroupHelper] = []  // made again for groups whose leader is gone
        var spaces: [Int32: AddressSpace] = [:]
        var cgroups: CgroupRestore?
        /// Image pid -> pid as cryo sees it (they differ inside a new pid namespace).
        var host: [Int32: Int32] = [:]

        /// Kills everything made; each process was made by us or is traced by us. Killing the
        /// init of a new pid namespace kills the rest of it.
        func killAll() {
            for pid in order.reversed() where !zombies.contains(pid) { kill(pid, SIGKILL) }
            var st: Int32 = 0
            let leaders = Set(order)
            for t in targets.values.flatMap({ $0 }) where !leaders.contains(t.pid) { waitpid(t.pid, &st, __WALL) }
            for pid in order.reversed() {
                waitpid(pid, &st, __WALL)  // ours or traced: reaped here, never left as a zombie
            }
        }
    }

    /// Restores and returns the root pid (detached) or waits and returns its exit status.
    public func run() throws -> (pid: Int32, exitStatus: Int32?) {
        let images = try request.imageStore.map { ImageDirectory(store: $0) } ?? ImageDirectory(path: request.imagesDir)
        try request.actionHook?(.preRestore, 0)
        var plans = try load(images)
        let seccomp = try seccompPlan(images, plans: plans)
        let cgroups = try CgroupRestore(images: images, mode: request.manageCgroups)
        try cgroups?.checkRoots(request.cgroupRoots, sets: Set(plans.compactMap { $0.cores[$0.pid]?.tc.cgSet }))
        log.debug("images of \(plans.count) process(es) loaded and checked")
        var lazy = request.lazyPages ? LazyRegistration() : nil
        try lazy?.split(&plans)
        let root = plans[0].pid
        let namespaces = try NamespacePlan.load(images: images, tasks: plans.map { ($0.pid, $0.ids, $0.isZombie) }, externals: try Externals(parsing: request.external))
        // A tree with a mount tree of its own: its files are checked as they are opened, in it.
        let ownMounts = try namespaces.ownMountTree(images: images)
        if !namespaces.kinds.contains(.ipc) { try HostSysVShm.check(plans.map { ($0.pid, $0.mm) }, id: plans[0].ids.ipcNsID, images: images) }
        if !ownMounts { try checkFiles(plans[0].files) }
        if ownMounts, let g = plans[0].files.values.first(where: { $0.hasReg && $0.reg.deleted }) {
            throw RestoreError.unsupported("the deleted file \(g.reg.name) of a tree with a mount tree of its own")
        }
        let ghosts = GhostFiles()
        defer { ghosts.removeAll() }
        var files = plans[0].files
        try ghosts.materialize(files: &files, images: images)
        for i in plans.indices { plans[i].files = files }

        let built = Built()
        let fills = FillQueue()
        let shmem = SharedMemoryObjects()
        defer { shmem.closeAll() }
        // Before the root exists: it inherits one end through fork, its children from it.
        let transport = try FdTransport()
        // Objects made in cryo for the files, shared by every task the restore rebuilds.
        let shared = RestoredObjects(images: images, files: files)
        if request.shellJob { shared.terminal = try Restorer.callerTerminal() }
        shared.sharedMemory = shmem
        shared.inherited = request.inheritedFds
        shared.extUnixSk = request.extUnixSk
        shared.ghosts = ghosts
        shared.fileLocks = try loadFileLocks(images, plans: plans)
        defer { shared.closeAll() }
        var holds: NamespaceHolds?
        var rootHost = root
        do {
            try shmem.prepare(plans, images: images)
            try cgroups?.prepare()
            built.cgroups = cgroups
            // cryo's thread stays in the namespaces it makes itself (net) until the tree runs:
            // the root is born in them, and the sockets cryo makes for the tree are in them.
            holds = try namespaces.enter(images: images, request: request)
            try createRoot(plans[0], built: built, plans: plans, namespaces: namespaces, entered: holds!, images: images)
            rootHost = built.host[root]!
            if let r = try namespaces.build(root: built.targets[root]![0], images: images, request: request) { shared.root = r }
            transport.childCreated()
            log.debug("root \(root) created")
            try request.actionHook?(.setupNamespaces, rootHost)
            try request.actionHook?(.postSetupNamespaces, rootHost)
            // Parents before children: a child is forked from its rebuilt parent, so memory
            // they shared copy-on-write is shared again.
            for p in plans where !p.isZombie {
                try rebuild(p, plans: plans, built: built, images: images, shmem: shmem, transport: transport, shared: shared, fills: fills)
                let children = plans.filter { $0.ppid == p.pid && $0.pid != plans[0].pid }
                if !children.isEmpty { try fills.wait(p.pid) }  // they inherit its memory
                for c in children {
                    try makeGroupHelper(for: c, parent: p, built: built, plans: plans)
                    try createChild(c, parent: p, built: built, plans: plans)
                }
                try Fault.check(.restoreTasks)
            }
            // Once every task is rebuilt: until then the tree's mount namespace keeps cryo's
            // /proc, where the objects cryo hands over by path (/proc/CRYO/fd/N) are found.
            try namespaces.restoreContents(root: built.targets[root]![0], images: images)
            try joinGroups(plans, built: built)
            try endGroupHelpers(built)
            try restoreTerminals(plans, built: built, transport: transport, shared: shared)
            try restoreDeferredFiles(plans, built: built, transport: transport, shared: shared)
            try exclusivePtys(shared: shared)
            try restoreFileOwners(plans, built: built, shared: shared)
            if lazy != nil {
                try fills.waitAll()  // no fill may touch memory registered from here on
                try lazy!.handOff(try lazy!.register(plans, built: built, transport: transport),
                                  socket: LazyPolicy.socketPath(workDir: request.workDir ?? request.imagesDir))
            }
            for p in plans where !p.isZombie {
                try transport.detach(from: built.targets[p.pid]![0].remote, pid: p.pid, owner: !sharesFiles(p))
            }
            // Every endpoint exists now: connections rebuilt in repair mode can go live.
            try shared.finishTcp()
            try fills.waitAll()
            fills.close()
            for p in plans where !p.isZombie { try built.spaces[p.pid]!.protect() }
            try request.actionHook?(.postRestore, rootHost)
            if request.actionHook != nil && holds!.has(.net) { try request.actionHook?(.networkUnlock, rootHost) }
            try finishAll(plans, built: built, seccomp: seccomp)
            try holds!.release(treeRuns: true)
            lazy?.resumed()
            // Now, not when run returns (after the root exits, unless detached): a file only
            // in flight must not stay open in cryo, a reader would wait for its pipe's EOF.
            shared.closeAll()
        } catch {
            fills.close()
            lazy?.resumed()
            built.killAll()
            cgroups?.undo()
            try? holds?.release(treeRuns: false)
            throw error
        }
        // As cryo sees it (CRIU's --pidfile too): the images' pid inside a new pid namespace differs.
        let rootPid = built.host[root] ?? root
        if let pf = request.pidfile {
            try? "\(rootPid)\n".write(toFile: pf, atomically: true, encoding: .utf8)
        }
        log.info("restored \(plans.count) process(es), root pid \(rootPid)\(rootPid != root ? " (\(root) in its pid namespace)" : "")")
        do { try request.actionHook?(.postResume, rootPid) } catch { log.warning("\(error)") }
        if request.detach { return (rootPid, nil) }
        var st: Int32 = 0
        while waitpid(rootPid, &st, 0) < 0 && errno == EINTR {}
        return (rootPid, st)
    }

    /// Every process of the tree, parents before children (the order they are created in).
    func load(_ images: ImageDirectory) throws -> [Plan] {
        try images.validateConsistency()
        let tree = try images.read(.pstree, as: Img_PstreeEntry.self)
        var files: [UInt32: Img_FileEntry] = [:]
        for f in try images.read(.files, as: Img_FileEntry.self) { files[f.id] = f }
        var byPid: [Int32: Plan] = [:]
        for p in tree {
            let pid = Int(p.pid)
            var cores: [Int32: Img_CoreEntry] = [:]
            for t in p.threads { cores[Int32(t)] = try images.readOne(.core, id: Int(t), as: Img_CoreEntry.self) }
            guard let core = cores[Int32(p.pid)], core.hasTc, core.mtype == .x8664 else {
                throw ImageError.inconsistent(file: images.filePath(.core, pid), offset: 0, reason: "no x86_64 task core")
            }
            if core.tc.taskState == TaskState.zombie.rawValue {
                guard p.threads.count == 1 else {
                    throw ImageError.inconsistent(file: images.filePath(.pstree), offset: 0, reason: "zombie \(p.pid) with threads")
                }
                byPid[Int32(p.pid)] = Plan(pstree: p, cores: cores, ids: Img_TaskKobjIdsEntry(), isZombie: true, mm: Img_MmEntry(), pagemap: [],
                                           pagesID: 0, files: files, fdinfo: [], fs: Img_FsEntry(), sigacts: [], pages: nil)
                continue
            }
            for (t, c) in cores where !c.hasThreadInfo {
                throw ImageError.inconsistent(file: images.filePath(.core, Int(t)), offset: 0, reason: "thread \(t) has no registers")
            }
            let (pagesID, pagemap) = try images.readPagemap(pid: Int32(pid))
            let fdinfo = try images.read(.fdinfo, id: pid, as: Img_FdinfoEntry.self)
            for fi in fdinfo where files[fi.id] == nil {
                throw ImageError.inconsistent(file: images.filePath(.fdinfo, pid), offset: 0, reason: "fd \(fi.fd) names file id \(fi.id), not in files.img")
            }
            let mm = try images.readOne(.mm, id: pid, as: Img_MmEntry.self)
            for v in mm.vmas where v.status & VmaStatus.filePrivate != 0 && files[UInt32(truncatingIfNeeded: v.shmid)] == nil {
                throw ImageError.inconsistent(file: images.filePath(.mm, pid), offset: 0, reason: "mapping at 0x\(String(v.start, radix: 16)) names file id \(v.shmid), not in files.img")
            }
            let ids = images.exists(.ids, pid) ? try images.readOne(.ids, id: pid, as: Img_TaskKobjIdsEntry.self) : Img_TaskKobjIdsEntry()
            let fs = try images.readOne(.fs, id: pid, as: Img_FsEntry.self)
            let sigacts = try images.read(.sigacts, id: pid, as: Img_SaEntry.self)
            byPid[Int32(pid)] = Plan(pstree: p, cores: cores, ids: ids, isZombie: false, mm: mm, pagemap: pagemap, pagesID: pagesID,
                                     files: files, fdinfo: fdinfo, fs: fs, sigacts: sigacts,
                                     pages: try PageSources(images: images, pid: pid, lazy: request.lazyPages))
        }
        // Parents first: breadth-first from the root (validateConsistency checked the links).
        var order: [Plan] = [byPid[Int32(tree[0].pid)]!]
        var i = 0
        while i < order.count {
            let parent = order[i].pid
            order += tree.filter { Int32($0.ppid) == parent && $0.pid != tree[0].pid }.map { byPid[Int32($0.pid)]! }
            i += 1
        }
        guard order.count == tree.count else {
            throw ImageError.inconsistent(file: images.filePath(.pstree), offset: 0, reason: "processes not reachable from the root")
        }
        if order[0].isZombie { throw RestoreError.unsupported("a tree whose root \(order[0].pid) is a zombie") }
        for p in order where !p.isZombie {
            if p.ids.hasVmID && p.ids.vmID != UInt32(p.pid) {
                throw RestoreError.unsupported("pid \(p.pid) sharing the address space of \(p.ids.vmID) outside a thread group")
            }
            for (what, id) in [("fd table", p.ids.filesID), ("fs", p.ids.fsID), ("signal handlers", p.ids.sighandID)]
            where id != 0 && id != UInt32(p.pid) && id != UInt32(p.ppid) {
                throw RestoreError.unsupported("pid \(p.pid) sharing its \(what) with \(id), which is not its parent")
            }
        }
        return order
    }

    /// Every file the images name must be there, with the size it had (ghosts are made later).
    func checkFiles(_ files: [UInt32: Img_FileEntry]) throws {
        for f in files.values where f.hasReg && !f.reg.deleted && !(request.shellJob && RegularFile.isTerminal(f.reg))
            && RegularFile.procPid(f.reg.name) == nil {  // /proc/PID/...: opened once the tree exists
            var st = stat()
            guard stat(f.reg.name, &st) == 0 else { throw RestoreError.fileMissing(path: f.reg.name, errno: errno) }
            if f.reg.hasSize && st.st_mode & S_IFMT == S_IFREG && UInt64(st.st_size) != f.reg.size {
                throw RestoreError.fileChanged(path: f.reg.name, expectedSize: f.reg.size, actualSize: UInt64(st.st_size))
            }
        }
    }

    /// The root comes from cryo (a C shim child); every other process is forked by clone3
    /// injected into its restored parent, so parenthood is real.
    func createRoot(_ p: Plan, built: Built, plans: [Plan], namespaces: NamespacePlan, entered: NamespaceHolds, images: ImageDirectory) throws {
        if namespaces.newPid && p.pid != 1 {
            throw NamespaceError.restore(kind: "pid", reason: "the tree's root is pid \(p.pid) in its pid namespace, not its init (1)")
        }
        let child = try cloning(p.cores[p.pid]!.threadCore, from: .own()) {
            try create(pid: p.pid, flags: namespaces.cloneFlags(entered: entered), time: namespaces.timeOffsets)
        }
        built.order.append(child)
        try namespaces.rootCreated(pid: child, images: images, request: request, holds: entered)
        try adopt(p, remote: try Remote(tid: child, maps: try ProcReader().maps(pid: child)), built: built, plans: plans)
    }

    func createChild(_ p: Plan, parent: Plan, built: Built, plans: [Plan]) throws {
        guard let pt = built.targets[parent.pid]?.first else {
            throw RestoreError.unsupported("pid \(p.pid): its parent \(parent.pid) was not made")
        }
        var flags: UInt64 = 0
        if p.ids.filesID == UInt32(parent.pid) { flags |= CloneFlag.files }
        if p.ids.fsID == UInt32(parent.pid) { flags |= CloneFlag.fs }
        let child = try cloning(p.cores[p.pid]!.threadCore, from: .remote(pt.remote)) {
            try clone(from: pt.remote, flags: flags, exitSignal: UInt64(SIGCHLD), pid: p.pid)
        }
        built.order.append(child)
        try adopt(p, remote: try Remote(tid: child, maps: try ProcReader().maps(pid: child)), built: built, plans: plans)
    }

    /// clone3 injected into `parent`, with exactly `pid`; a pid already in use is named.
    func clone(from parent: Remote, flags: UInt64, exitSignal: UInt64, pid: Int32) throws -> Int32 {
        do {
            return try parent.cloneTask(flags: flags, exitSignal: exitSignal, setTid: pid)
        } catch RemoteError.syscallFailed(_, _, let e) where e == EEXIST {
            throw RestoreError.pidTaken(pid: pid, by: (try? ProcReader().stat(pid: pid)).map { "\($0.comm) (state \($0.state))" } ?? "another process")
        }
    }

    /// A new task for `p`: zombies exit at once with their status; a session leader makes its
    /// session, everyone else must be in the one it inherited.
    func adopt(_ p: Plan, remote: Remote, built: Built, plans: [Plan]) throws {
        built.targets[p.pid] = [RestoreTarget(pid: remote.tid, remote: remote, vpid: p.pid)]
        built.host[p.pid] = remote.tid
        // Before its memory is made, so the pages are charged to its own memory cgroup.
        try built.cgroups?.place(pid: remote.tid, set: p.cores[p.pid]!.tc.cgSet)
        if p.isZombie {
            let code = Int32(bitPattern: p.cores[p.pid]!.tc.exitCode)
            let name = try remote.scratch()
            try remote.writeMemory(Array(p.cores[p.pid]!.tc.comm.utf8.prefix(15)) + [0], at: name)
            try remote.syscall(.prctl, 15 /* PR_SET_NAME */, name)
            try placeZombie(p, remote: remote, plans: plans)
            try remote.terminate(exitCode: (code >> 8) & 0xff, signal: code & 0x7f)
            built.zombies.insert(remote.tid)
            return
        }
        if p.pstree.sid == p.pstree.pid {
            try remote.syscall(.setsid)
        } else if request.shellJob && !plans.contains(where: { $0.pstree.pid == p.pstree.sid }) {
            // The job's session (its shell's) is not in the tree: it takes cryo's, inherited.
        } else if Int32(p.pstree.sid) != Int32(truncatingIfNeeded: try remote.syscall(.getsid, 0)) {
            throw RestoreError.unsupported("pid \(p.pid) in session \(p.pstree.sid), which is neither its own nor its parent's")
        }
    }

    /// The terminal a shell job's terminal fds reopen: cryo's own (stdin's, else /dev/tty).
    static func callerTerminal() throws -> String {
        for fd: Int32 in [0, 1, 2] where isatty(fd) != 0 {
            if let p = try? ProcReader().fdTarget(pid: getpid(), fd: fd) { return p }
        }
        let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard fd >= 0 else { throw RestoreError.unsupported("--shell-job without a terminal: cryo has none (\(String(cString: strerror(errno))))") }
        close(fd)
        return "/dev/tty"
    }

    /// Process groups, once every group leader exists.
    func joinGroups(_ plans: [Plan], built: Built) throws {
        for p in plans where !p.isZombie {
            let r = built.targets[p.pid]![0].remote
            let now = Int32(truncatingIfNeeded: try r.syscall(.getpgid, 0))
            // A shell job's group may be its shell's, outside the tree: it stays in cryo's.
            if request.shellJob && !plans.contains(where: { $0.pstree.pid == p.pstree.pgid }) { continue }
            if now != Int32(p.pstree.pgid) {
                do { try r.syscall(.setpgid, 0, UInt64(p.pstree.pgid)) } catch {
                    throw RestoreError.unsupported("pid \(p.pid) joining process group \(p.pstree.pgid): \(error)")
                }
            }
        }
    }

    /// A child with exactly `pid`, seized and stopped. A zombie still holding the pid (pid 1
    /// reaps late here) is waited for briefly.
    func create(pid: Int32, flags: UInt64 = 0, time: TimeOffsets? = nil) throws -> Int32 {
        let deadline = Date().addingTimeInterval(3)
        while true {
            let f = flags | (request.sibling ? CloneFlag.parent : 0)
            let r = time.map { ck_clone3_stopped_child_timens(pid, f, $0.monotonic.sec, $0.monotonic.nsec, $0.boottime.sec, $0.boottime.nsec) }
                ?? ck_clone3_stopped_child(pid, f)
            if r > 0 {
                do {
                    guard try TreeFreezer.seizeThread(r, log: log) != nil else { throw RestoreError.create(pid: pid, errno: ESRCH) }
                } catch {
                    // Ours and unseized (another tracer?): it must not outlive the failure.
                    kill(r, SIGKILL)
                    var st: Int32 = 0
                    waitpid(r, &st, __WALL)
                    throw error
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

    /// Memory, files and process-wide state of one process, then its other threads.
    func rebuild(_ plan: Plan, plans: [Plan], built: Built, images: ImageDirectory, shmem: SharedMemoryObjects,
                 transport: FdTransport, shared: RestoredObjects, fills: FillQueue) throws {
        let proc = ProcReader()
        let pid = plan.pid
        let t = built.targets[pid]![0]
        let remote = t.remote
        let sharesFiles = self.sharesFiles(plan)
        var timer = PhaseTimer()
        func mark(_ s: String) { timer.mark(s) }
        defer {
            mark("end")
            log.debug("pid \(pid) timing: \(timer.summary)")
        }

        // Drop what the task inherited: rseq registration, fds (unless the table is its
        // parent's, already restored), then memory.
        if let rs = try? Ptrace.rseqConfiguration(t.pid), rs.pointer != 0 {
            try remote.syscall(.rseq, rs.pointer, UInt64(rs.size), 1 /* RSEQ_FLAG_UNREGISTER */, UInt64(rs.signature))
        }
        if sharesFiles {
            transport.share(pid: pid, with: plan.ppid)
        } else {
            // Every inherited fd goes except the transport's end, parked above all restored
            // fds. The task has cryo's fd limit until its own rlimits are restored, which may
            // be too low for its fd numbers (and the parked one above them): raise it for now.
            let transportFd = Int32(plan.fdinfo.map(\.fd).max().map { $0 + 1 } ?? 0)
            try allowFds(upTo: Int(transportFd) + 2 + plan.fdinfo.count, pid: t.pid)
            try transport.keep(in: remote, pid: pid, at: transportFd, parent: plan.pid == plans[0].pid ? nil : plan.ppid)
        }
        var space = AddressSpace(target: t, plan: plan, images: images, proc: proc)
        space.shmem = shmem
        space.transport = transport
        space.objects = shared
        space.fillBuffers = fillBuffers
        space.parentHostPid = built.host[plan.ppid]
        if let parent = plans.first(where: { $0.pid == plan.ppid && !$0.isZombie }), plan.pid != plans[0].pid {
            space.inherited = Restorer.inheritable(plan, from: parent)
        }
        mark("prepare")
        try space.build()
        built.spaces[pid] = space
        let filling = space
        fills.submit(pid: pid) { try filling.fill() }
        mark("memory")
        if !sharesFiles { try restoreFiles(t, plan: plan, transport: transport, shared: shared) }
        try restoreFs(t, plan: plan)
        try restoreFileLocks(t, pid: pid, locks: shared.fileLocks, files: plan.files, fdinfo: plan.fdinfo)
        mark("files")
        // A child was forked from its rebuilt parent, the root from cryo: their actions now.
        let current: [Int: [UInt64]]
        if let parent = plans.first(where: { $0.pid == plan.ppid }), plan.pid != plans[0].pid {
            current = Dictionary(uniqueKeysWithValues: parent.sigacts.enumerated().map { ($0.offset + 1, [$0.element.sigaction, $0.element.flags, $0.element.restorer, $0.element.mask]) })
        } else {
            current = Restorer.ownSignalActions()
        }
        try restoreProcess(t, plan: plan, current: current)
        mark("process")

        for tid in plan.pstree.threads.map({ Int32($0) }) where tid != pid {
            let flags = CloneFlag.vm | CloneFlag.fs | CloneFlag.files | CloneFlag.sighand | CloneFlag.thread | CloneFlag.sysvsem
            let got = try cloning(plan.cores[tid]!.threadCore, from: .remote(remote)) { try remote.cloneTask(flags: flags, exitSignal: 0, setTid: tid) }
            let tt = RestoreTarget(pid: got, remote: try Remote(tid: got, maps: try proc.maps(pid: t.pid)), vpid: tid)
            tt.scratch = t.scratch  // one address space, one scratch area
            built.targets[pid]!.append(tt)
        }
        for tt in built.targets[pid]! {
            try restoreThread(tt, core: plan.cores[tt.vpid]!, comm: plan.cores[pid]!.tc.comm)
        }
        try restorePosixTimers(t, plan.cores[pid]!.tc.timers.posix)
    }

    /// The process was forked with CLONE_FILES: its fd table is its parent's.
    func sharesFiles(_ p: Plan) -> Bool { p.ppid != 0 && p.ids.hasFilesID && p.ids.filesID == UInt32(p.ppid) }

    /// The VMAs a forked child keeps from its parent: private and identical in both images,
    /// and either holding pages the child still shared with the parent (they must be kept) or
    /// no pages of the child's own (libraries' text, mostly: keeping is cheaper than mapping
    /// again, and build() drops whatever the parent had there, back to zero or the file). One
    /// filled with the child's own pages is mapped afresh: filling over the parent's pages
    /// would copy each of them first.
    static func inheritable(_ child: Plan, from parent: Plan) -> [Img_VmaEntry] {
        let private_ = VmaStatus.anonPrivate | VmaStatus.filePrivate
        let theirs = Dictionary(parent.mm.vmas.map { ($0.start, $0) }, uniquingKeysWith: { a, _ in a })
        return child.mm.vmas.filter { v in
            guard v.status & private_ != 0, let p = theirs[v.start], p.end == v.end, p.status == v.status,
                  p.flags == v.flags, p.prot == v.prot, p.pgoff == v.pgoff, p.shmid == v.shmid else { return false }
            // A run of pages may span neighbouring VMAs: overlap, not where it starts.
            let inside = child.pagemap.filter { $0.vaddr < v.end && $0.vaddr + UInt64($0.nrPages) * 4096 > v.start }
            return inside.isEmpty || inside.contains { $0.pageFlags.contains(.cowParent) }
        }
    }

    /// Creds, signals, FPU and registers of every thread, then every task resumes at once.
    func finishAll(_ plans: [Plan], built: Built, seccomp: [Int32: SeccompInstall] = [:]) throws {
        for p in plans where !p.isZombie {
            let targets = built.targets[p.pid]!
            if plans.contains(where: { $0.isZombie && $0.ppid == p.pid }) {
                try drainSigchld(targets[0])
            }
            try queueShared(targets[0], core: p.cores[p.pid]!)
            // Last of the process's memory work: from here on no mapping may gain PROT_EXEC.
            if p.cores[p.pid]!.tc.mdwe != 0 { try restoreMdwe(targets[0], p.cores[p.pid]!.tc.mdwe) }
            // Threads before the leader: the leader's finish unmaps the shared scratch area.
            for t in targets.dropFirst() + [targets[0]] {
                let core = p.cores[t.vpid]!
                try Scheduling.apply(tid: t.pid, core.threadCore)
                try CpuAffinity.apply(tid: t.pid, core.threadCore)
                try restoreCreds(t, core.threadCore.creds, seccomp: seccomp[t.vpid] ?? .none, noNewPrivs: noNewPrivs(p, tid: t.vpid))
                // A change of uid (into a user namespace's range) resets it: set again as dumped.
                if p.mm.hasDumpable { try t.remote.syscall(.prctl, 4 /* PR_SET_DUMPABLE */, UInt64(max(0, p.mm.dumpable))) }
                // So would the parent-death signal be: set only now, after the creds.
                if core.threadCore.pdeathSig != 0 { try restorePdeathSig(t, core.threadCore.pdeathSig) }
                try queuePrivate(t, core: core)
                try restoreXState(t, core.threadInfo.fpregs)
                try t.remote.finish(registers: restartedRegisters(core.threadInfo.gpregs), sigmask: blockedMask(p, t))
            }
            for t in targets {
                try verifySecurity(pid: targets[0].pid, tid: t.pid, core: p.cores[t.vpid]!, seccomp: seccomp[t.vpid] ?? .none, noNewPrivs: noNewPrivs(p, tid: t.vpid))
            }
        }
        for p in plans where !p.isZombie {
            let tc = p.cores[p.pid]!.tc
            let targets = built.targets[p.pid]!
            guard tc.taskState == TaskState.stopped.rawValue else {
                for t in targets { try Ptrace.detach(t.pid) }
                continue
            }
            try detachStopped(p, targets: targets, host: built.host[p.pid]!, signal: tc.hasStopSigno ? Int32(tc.stopSigno) : SIGSTOP)
        }
    }

    /// The signals a thread blocks, as dumped: the leader's are the task core's.
    func blockedMask(_ p: Plan, _ t: RestoreTarget) -> UInt64 {
        let core = p.cores[t.vpid]!
        return t.vpid == p.pid ? core.tc.blkSigset : core.threadCore.blkSigset
    }

    /// A stopped process comes back stopped by its own signal, and none of its threads may run
    /// a user instruction first. SIGTSTP can be blocked: a thread that blocks it (one still in
    /// pthread_create's all-blocked start) would run on, unblock, and lose its mask, if it were
    /// let go before another thread had begun the group stop. So a thread that takes the signal
    /// goes first, and the rest only once it has stopped (the group stop is then pending on
    /// them, and taken before user code). When every thread blocks it, SIGSTOP stops them.
    func detachStopped(_ p: Plan, targets: [RestoreTarget], host: Int32, signal: Int32) throws {
        let bit = UInt64(1) << UInt64(signal - 1)
        let first = signal == SIGSTOP ? targets.first : targets.first { blockedMask(p, $0) & bit == 0 }
        let sig = first == nil ? SIGSTOP : signal
        if sig != signal { log.warning("pid \(host): every thread blocks signal \(signal), which had stopped it; stopped with SIGSTOP instead") }
        guard kill(host, sig) == 0 else { throw SystemCallError(call: "kill", errno: errno, context: "pid \(host): stop signal \(sig)") }
        let lead = first ?? targets[0]
        try Ptrace.detach(lead.pid)
        let proc = ProcReader()
        for _ in 0..<20_000 {
            if (try? proc.stat(pid: lead.pid))?.state == "T" { break }
            usleep(100)
        }
        for t in targets where t.pid != lead.pid { try Ptrace.detach(t.pid) }
    }

    /// A zombie made during restore sent its parent a SIGCHLD the original parent had already
    /// taken; the dumped pending signals are queued again afterwards.
    func drainSigchld(_ t: RestoreTarget) throws {
        var set: [UInt8] = []
        set.putU64(UInt64(1) << UInt64(SIGCHLD - 1))
        set.putU64(0); set.putU64(0)  // timeout {0, 0}
        let p = try t.put(set)
        while true {
            let r = try t.remote.rawSyscall(SyscallNumber.rtSigtimedwait.rawValue, [p, 0, p + 8, 8])
            if r < 0 { break }
        }
    }

    /// Raises the child's RLIMIT_NOFILE soft limit so that fd numbers below `n` can be used.
    func allowFds(upTo n: Int, pid: Int32) throws {
        var lim = (cur: UInt64(0), max: UInt64(0))
        let rc = withUnsafeMutablePointer(to: &lim) { ck_syscall6(SyscallNumber.prlimit64.rawValue, Int(pid), Int(RLIMIT_NOFILE.rawValue), 0, Int(bitPattern: $0), 0, 0) }
        guard rc == 0 else { throw SystemCallError(call: "prlimit64(RLIMIT_NOFILE)", errno: ck_errno(), context: "pid \(pid)") }
        guard lim.cur < UInt64(n) else { return }
        guard lim.max >= UInt64(n) else {
            throw RestoreError.unsupported("pid \(pid): fd numbers up to \(n), above the hard fd limit \(lim.max) cryo runs with")
        }
        lim.cur = UInt64(n)
        let set = withUnsafeMutablePointer(to: &lim) { ck_syscall6(SyscallNumber.prlimit64.rawValue, Int(pid), Int(RLIMIT_NOFILE.rawValue), Int(bitPattern: $0), 0, 0, 0) }
        guard set == 0 else { throw SystemCallError(call: "prlimit64(RLIMIT_NOFILE, \(n))", errno: ck_errno(), context: "pid \(pid)") }
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

    /// Installs every fd: each file id once (kinds that refer to other fds last), then the
    /// other fds of the same description as dups of the first.
    func restoreFiles(_ t: RestoreTarget, plan: Plan, transport: FdTransport, shared: RestoredObjects, stages: ClosedRange<Int> = 0...3) throws {
        let ctx = FileRestoreContext(task: t, transport: transport, shared: shared)
        var ordered: [(Img_FdinfoEntry, Img_FileEntry, any FdKind.Type)] = []
        for fi in plan.fdinfo {
            guard let f = plan.files[fi.id], let kind = FdKinds.kind(for: f.type) else {
                throw RestoreError.unsupported("fd \(fi.fd) of type \(fi.type)")
            }
            ordered.append((fi, f, kind))
        }
        for stage in stages {
            for (fi, f, kind) in ordered where kind.restoreStage(f, files: plan.files) == stage {
                let want = Int32(fi.fd)
                if let first = ctx.placed[fi.id] {
                    try t.remote.syscall(.dup2, UInt64(first), UInt64(want))
                } else if ctx.parked[fi.id] == nil, let made = ctx.objects[fi.id] {
                    // Another task of the tree has this description already: the same object.
                    let got = try ctx.transport.send(made, to: t, what: "file id \(fi.id) (shared)")
                    if got != want {
                        try t.remote.syscall(.dup2, UInt64(got), UInt64(want))
                        try t.remote.syscall(.close, UInt64(got))
                    }
                    ctx.placed[fi.id] = want
                } else {
                    let got = try kind.restore(f, ctx: ctx)
                    if got != want {
                        try t.remote.syscall(.dup2, UInt64(got), UInt64(want))
                        try t.remote.syscall(.close, UInt64(got))
                    }
                    ctx.placed[fi.id] = want
                    try registerAsync(t, fd: want, object: ctx.objects[fi.id])
                }
                if fi.flags & UInt32(O_CLOEXEC) != 0 {
                    try t.remote.syscall(.fcntl, UInt64(want), UInt64(F_SETFD), UInt64(FD_CLOEXEC))
                }
            }
        }
    }

    /// O_ASYNC registers the fd number it was set through: SIGIO (or the F_SETSIG signal)
    /// names it in si_fd. Set on cryo's copy, it would name cryo's number; so it is set again
    /// through the task's own fd.
    func registerAsync(_ t: RestoreTarget, fd: Int32, object: Int32?) throws {
        let flags: Int32
        if let o = object { flags = fcntl(o, F_GETFL) } else { flags = Int32(truncatingIfNeeded: try t.remote.syscall(.fcntl, UInt64(fd), UInt64(F_GETFL))) }
        guard flags >= 0, flags & O_ASYNC != 0 else { return }
        try t.remote.syscall(.fcntl, UInt64(fd), UInt64(F_SETFL), UInt64(UInt32(bitPattern: flags & ~O_ASYNC)))
        try t.remote.syscall(.fcntl, UInt64(fd), UInt64(F_SETFL), UInt64(UInt32(bitPattern: flags)))
    }

    func restoreFs(_ t: RestoreTarget, plan: Plan) throws {
        guard let cwd = plan.files[plan.fs.cwdID], let root = plan.files[plan.fs.rootID] else {
            throw RestoreError.unsupported("fs image without cwd or root")
        }
        // cwd first: both paths are as cryo sees them, and a chroot leaves cwd where it is.
        do { try t.remote.syscall(.chdir, try t.put(string: cwd.reg.name)) } catch {
            throw RestoreError.fileMissing(path: cwd.reg.name, errno: ENOENT)
        }
        if root.reg.name != "/" {
            try t.remote.syscall(.chroot, try t.put(string: root.reg.name))
        }
        try t.remote.syscall(.umask, UInt64(plan.fs.umask))
    }

    /// What belongs to the whole process: signal handlers, itimers, rlimits, personality...
    /// `current`: the actions the task already has (a fork copies them), by signal number;
    /// only the ones that differ are set.
    func restoreProcess(_ t: RestoreTarget, plan: Plan, current: [Int: [UInt64]]) throws {
        let r = t.remote
        let tc = plan.cores[plan.pid]!.tc
        for (i, sa) in plan.sigacts.enumerated() {
            let sig = i + 1
            if sig == SIGKILL || sig == SIGSTOP { continue }
            let want = [sa.sigaction, sa.flags, sa.restorer, sa.mask]
            if current[sig] == want { continue }
            var b: [UInt8] = []
            for v in want { b.putU64(v) }
            try r.syscall(.rtSigaction, UInt64(sig), try t.put(b), 0, 8)
        }
        if tc.hasTimers {
            for (which, e) in [tc.timers.real, tc.timers.virt, tc.timers.prof].enumerated() {
                var b: [UInt8] = []
                // A periodic ITIMER_REAL that fired and whose SIGALRM is not dequeued yet shows
                // no time left: the kernel re-arms it only on that dequeue. Set with no time
                // left it would be disarmed; set to fire at once it is in the same state again
                // (fired, SIGALRM pending, re-armed when taken).
                let fired = which == 0 && e.vsec == 0 && e.vusec == 0 && (e.isec != 0 || e.iusec != 0)
                b.putU64(e.isec); b.putU64(e.iusec); b.putU64(e.vsec); b.putU64(fired ? 1 : e.vusec)
                try r.syscall(.setitimer, UInt64(which), try t.put(b), 0)
            }
        }
        for (res, e) in tc.rlimits.rlimits.enumerated() {
            var lim = (cur: e.cur, max: e.max)
            let rc = withUnsafeMutablePointer(to: &lim) { ck_syscall6(SyscallNumber.prlimit64.rawValue, Int(t.pid), res, Int(bitPattern: $0), 0, 0, 0) }
            if rc < 0 { throw RestoreError.unsupported("pid \(t.pid): rlimit \(ProcLimitsParser.names[min(res, 15)]) \(e.cur)/\(e.max) (raising a hard limit above cryo's own needs CAP_SYS_RESOURCE): \(String(cString: strerror(ck_errno())))") }
        }
        try r.syscall(.personality, UInt64(tc.personality))
        if tc.childSubreaper { try r.syscall(.prctl, 36, 1) }
        if tc.membarrierRegistrationMask != 0 { try restoreMembarrier(t, mask: tc.membarrierRegistrationMask) }
        if tc.hasOomScoreAdj { try restoreOomScoreAdj(t, tc.oomScoreAdj) }
        if tc.hasCoredumpFilter { try restoreCoredumpFilter(t, tc.coredumpFilter) }
        if tc.hasLoginuid { try restoreLoginuid(t, tc.loginuid) }
        if plan.mm.hasDumpable { try r.syscall(.prctl, 4 /* PR_SET_DUMPABLE */, UInt64(max(0, plan.mm.dumpable))) }
        if plan.mm.thpDisabled { try r.syscall(.prctl, 41 /* PR_SET_THP_DISABLE */, 1, 0, 0, 0) }
    }

    /// POSIX timers come back under their ids (PR_TIMER_CREATE_RESTORE_IDS makes timer_create
    /// take the id it is given), armed with the time they had left. Threads exist by now, for
    /// timers that signal one thread.
    func restorePosixTimers(_ t: RestoreTarget, _ timers: [Img_PosixTimerEntry]) throws {
        guard !timers.isEmpty else { return }
        let r = t.remote
        do { try r.syscall(.prctl, 77 /* PR_TIMER_CREATE_RESTORE_IDS */, 1, 0, 0, 0) } catch {
            throw RestoreError.unsupported("POSIX timers of pid \(t.pid): this kernel cannot create timers with given ids (\(error))")
        }
        for e in timers {
            var sev: [UInt8] = []
            sev.putU64(e.sivalPtr)
            sev.putU32(e.siSigno)
            sev.putU32(e.itSigevNotify)
            sev.putU32(UInt32(bitPattern: e.notifyThreadID))
            sev += [UInt8](repeating: 0, count: 64 - sev.count)
            var id: [UInt8] = []
            id.putU32(e.itID)
            let sevAt = try t.put(sev), idAt = try t.put(id, offset: 64)
            do {
                try r.syscall(.timerCreate, UInt64(e.clockID), sevAt, idAt)
            } catch {
                throw RestoreError.unsupported("POSIX timer \(e.itID) of pid \(t.pid): \(error)")
            }
            let got = try r.readMemory(at: idAt, count: 4).u32(at: 0)
            guard got == e.itID else { throw RestoreError.layout(pid: t.pid, reason: "POSIX timer \(e.itID) came back as \(got)") }
            if e.vsec != 0 || e.vnsec != 0 {
                var its: [UInt8] = []
                its.putU64(e.isec); its.putU64(e.insec); its.putU64(e.vsec); its.putU64(e.vnsec)
                try r.syscall(.timerSettime, UInt64(e.itID), 0, try t.put(its, offset: 128), 0)
            }
        }
        try r.syscall(.prctl, 77, 0, 0, 0, 0)
    }

    /// cryo's own signal actions, as the kernel keeps them (what a task cloned from cryo has).
    static func ownSignalActions() -> [Int: [UInt64]] {
        var out: [Int: [UInt64]] = [:]
        for sig in 1...64 where sig != SIGKILL && sig != SIGSTOP {
            var a: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
            let rc = withUnsafeMutablePointer(to: &a) { ck_syscall6(SyscallNumber.rtSigaction.rawValue, sig, 0, Int(bitPattern: $0), 8, 0, 0) }
            if rc == 0 { out[sig] = [a.0, a.1, a.2, a.3] }
        }
        return out
    }

    /// What each thread has of its own: name, robust list, clear-tid address, alternate
    /// signal stack, rseq (its parent-death signal comes after its creds, in finishAll).
    func restoreThread(_ t: RestoreTarget, core: Img_CoreEntry, comm: String) throws {
        let r = t.remote
        let th = core.threadCore
        try r.syscall(.prctl, 15 /* PR_SET_NAME */, try t.put(string: th.hasComm ? th.comm : comm))
        try restoreTimerSlacks(t, th)
        // Always, when dumped: a thread forked from a restored parent has the parent's.
        if th.hasMempolicyMode { try NumaPolicy.set(t, mode: th.mempolicyMode, nodes: th.mempolicyNodes, range: nil) }
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
    }

    /// Pending signals go back through the task itself (only a task may queue arbitrary
    /// siginfo to itself); every signal is blocked while we work, so none is delivered early.
    func queueShared(_ t: RestoreTarget, core: Img_CoreEntry) throws {
        for s in core.tc.signalsS.signals {
            let info = [UInt8](s.siginfo)
            guard info.count == 128 else { continue }
            try t.remote.syscall(.rtSigqueueinfo, UInt64(t.vpid), UInt64(info.u32(at: 0)), try t.put(info))
        }
    }

    func queuePrivate(_ t: RestoreTarget, core: Img_CoreEntry) throws {
        let tgid = Int32(truncatingIfNeeded: try t.remote.syscall(.getpid))
        for s in core.threadCore.signalsP.signals {
            let info = [UInt8](s.siginfo)
            guard info.count == 128 else { continue }
            try t.remote.syscall(.rtTgsigqueueinfo, UInt64(tgid), UInt64(t.vpid), UInt64(info.u32(at: 0)), try t.put(info))
        }
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
