import Foundation
import Glibc
import Logging

/// `cryo dump`: freeze the tree, write its images, then leave it killed, running or stopped.
/// A failed dump resumes the tree untouched and removes the partial images.
public struct Dumper {
    public let request: DumpRequest
    let log = Logger(label: "dump")
    public init(_ request: DumpRequest) { self.request = request }

    public struct Stats: Sendable {
        public var frozenSeconds: Double = 0
        public var pagesBytes: UInt64 = 0
        public var processes = 0
        public init() {}
    }

    @discardableResult
    public func run() throws -> Stats {
        let images = try request.imageStore.map { ImageDirectory(store: $0) } ?? ImageDirectory(path: request.imagesDir, create: true)
        let proc = ProcReader()
        let transport = try PageTransports.make(images: images, pageServer: request.pageServer)
        let t0 = Date()
        try request.actionHook?(.preDump, request.pid)
        let tree = try TreeFreezer.freeze(root: request.pid, proc: proc)
        let netLocked = request.actionHook != nil && RuntimeChecks.ownNetworkNamespace(request.pid)
        log.info("frozen \(tree.processes.count) process(es) in \(String(format: "%.3f", Date().timeIntervalSince(t0))) s")
        var written: [String] = []
        var tracking: TreeTracking?
        // Lives until the tree is left as asked: it holds the TCP connections in repair mode.
        let files = FileTable(images: images)
        files.context.shellJob = request.shellJob
        files.context.locks.enabled = request.fileLocks
        files.context.extUnixSk = request.extUnixSk
        files.context.leavesRunning = request.leave != .killed
        var holds: NamespaceHolds?
        do {
            try Fault.check(.afterFreeze)
            var externals = try Externals(parsing: request.external)
            externals.emptyNamespaces = request.emptyNamespaces
            files.context.extUnixSk.inodes.formUnion(externals.unixSockets)
            let namespaces = try NamespaceSet.collect(root: tree.root, processes: tree.processes.map { ($0.pid, $0.threads) }, proc: proc,
                                                      externals: externals.namespaces)
            let pids = try PidMap.read(processes: tree.processes.map { ($0.pid, $0.threads) }, inNewNamespace: namespaces.newKinds.contains(.pid), proc: proc)
            files.context.pids = pids
            files.context.namespaceIDs = namespaces.ids
            files.context.hostNamespaces = namespaces.own
            files.context.treeNamespaces = namespaces.perTask[tree.root] ?? [:]
            if namespaces.newKinds.contains(.mnt) { files.context.mountIDs = try MountNamespace.ownTreeMountIDs(pid: tree.root, proc: proc) }
            holds = try namespaces.hold(request: request)
            try RuntimeChecks.dump(request, tree: tree)
            if netLocked { try request.actionHook?(.networkLock, request.pid) }
            var plans: [Int32: IncrementalPlan] = [:]
            if request.trackMem || request.prevImagesDir != nil {
                let inc = try Incremental.prepare(pids: tree.processes.filter { !$0.isZombie }.map(\.pid), imagesDir: images,
                                                  prev: request.prevImagesDir, storeFd: request.trackStore, proc: proc, pages: transport, imagePid: pids.image)
                tracking = inc.tracking
                plans = inc.plans
            }
            written = try holds!.within { try write(tree: tree, images: images, proc: proc, files: files, plans: plans, pages: transport,
                                                     namespaces: namespaces, externals: externals, pids: pids) }
            try request.actionHook?(.postDump, request.pid)
        } catch {
            do { try holds?.release(treeRuns: true) } catch { log.error("\(error)") }
            if netLocked { try? request.actionHook?(.networkUnlock, request.pid) }
            log.error("dump failed, resuming the tree: \(error)")
            transport.abort()
            files.context.finishRepair(connectionsVanish: false)
            reportRepairErrors(files.context)
            tracking?.drop()
            for e in files.context.ttys.finish(putBack: true) { log.error("\(e)") }
            tree.release()
            for f in written { unlink(f) }
            removeImages(images)
            if request.prevImagesDir != nil { try? images.store.setParent(nil) }
            throw error
        }
        var stats = Stats()
        stats.processes = tree.processes.count
        stats.pagesBytes = transport.pagesBytes
        // A killed tree needs no tracking; one left alive carries it to the next snapshot.
        // Without a track store, a dump that does not leave the tree running ends the chain: the keeper lets go.
        if request.leave == .killed || (request.trackStore == nil && request.leave != .running) { tracking?.drop() } else {
            do { try tracking?.park() } catch { log.warning("tracking could not be parked, the next snapshot will be full: \(error)") }
        }
        // Pty queues read by the dump go back before the tree runs on.
        for e in files.context.ttys.finish(putBack: request.leave != .killed) { log.error("\(e)") }
        switch request.leave {
        case .killed:
            tree.release(killing: true)
            tree.awaitDeath()
            files.context.finishRepair(connectionsVanish: true)
        case .running:
            files.context.finishRepair(connectionsVanish: false)
            tree.release()
            if netLocked { try request.actionHook?(.networkUnlock, request.pid) }
        case .stopped:
            files.context.finishRepair(connectionsVanish: false)
            tree.release(leaveStopped: true)
        }
        reportRepairErrors(files.context)
        do { try holds?.release(treeRuns: request.leave != .killed) } catch { log.error("\(error)") }
        stats.frozenSeconds = Date().timeIntervalSince(t0)
        log.info("dump done: \(stats.pagesBytes) bytes of pages, frozen \(String(format: "%.3f", stats.frozenSeconds)) s")
        return stats
    }

    /// The connections stay as the dump made them (the images are complete); a socket that
    /// would not leave repair mode is logged, naming it.
    func reportRepairErrors(_ ctx: FileDumpContext) {
        for e in ctx.repairErrors { log.error("connection left in repair mode: \(e)") }
    }

    func write(tree: FrozenTree, images: ImageDirectory, proc: ProcReader, files: FileTable, plans: [Int32: IncrementalPlan] = [:], pages: PageTransport,
               namespaces: NamespaceSet, externals: Externals, pids: PidMap) throws -> [String] {
        files.dumping(tree.processes.map(\.pid))
        var pstree: [Img_PstreeEntry] = []
        for p in tree.processes {
            let st = try proc.stat(pid: p.pid)
            var e = Img_PstreeEntry()
            e.pid = UInt32(p.pid)
            e.ppid = p.pid == tree.root ? 0 : UInt32(st.ppid)
            e.pgid = UInt32(st.pgrp)
            e.sid = UInt32(st.session)
            e.threads = p.threads.map { UInt32($0) }
            pstree.append(e)
        }
        try TreeChecks.zombies(pstree, zombies: Set(tree.processes.filter(\.isZombie).map(\.pid)), shellJob: request.shellJob)
        try TreeChecks.sessions(pstree, shellJob: request.shellJob)
        let shmem = SharedMemoryDumper()
        let live = Set(tree.processes.filter { !$0.isZombie }.map(\.pid))
        let cow = try CowMap.build(pairs: pstree.filter { $0.ppid != 0 && live.contains(Int32($0.pid)) && live.contains(Int32($0.ppid)) }
            .map { (Int32($0.pid), Int32($0.ppid)) }, proc: proc)
        // Each process's pages are copied in the background while the next one is read.
        let copier = PageCopier()
        // The frozen tasks splice their own pages out (no copy on our side), to whatever store takes pipes.
        let spliced = request.splicePages && SplicedPages.usable(for: pages, leave: request.leave) ? SplicedPages(proc: proc) : nil
        var ids = try SharedTables.ids(of: tree.processes.filter { !$0.isZombie }.map(\.pid))
        for pid in ids.keys { ids[pid] = pids.image(ids[pid]!); namespaces.fill(&ids[pid]!, pid: pid) }
        try namespaces.dumpContents(images: images, proc: proc, externals: externals)
        let seccomp = SeccompImageBuilder()
        let cgroups = request.manageCgroups == .ignore ? nil : try CgroupCollector(proc: proc)
        if cgroups == nil, namespaces.newKinds.contains(.cgroup) {
            throw NamespaceError.unsupported(pid: tree.root, kind: "cgroup", inode: namespaces.perTask[tree.root]?[.cgroup] ?? 0,
                                             reason: "its roots are dumped with the tree's cgroups, which --manage-cgroups=ignore leaves out")
        }
        let cores = CoreImages()
        do {
            for (i, p) in tree.processes.enumerated() {
                if p.isZombie {
                    try writeZombie(p.pid, images: images, proc: proc, id: pids.image(p.pid))
                    continue
                }
                let job = try ProcessDumper(process: p, images: images, proc: proc, files: files, pagesID: Int(pids.image(p.pid)), ids: ids[p.pid]!, shmem: shmem, cow: cow, pages: pages, incremental: plans[p.pid], seccomp: seccomp,
                                            cgSet: try cgroups?.add(pid: p.pid, threads: p.threads) ?? 0, cores: cores, pids: pids)
                    .dump(pstree: pstree[i])
                if let spliced, SplicedPages.splices(job, to: pages) { try spliced.send(job) } else { copier.submit(job) }
            }
            log.info("state of \(tree.processes.count) process(es) written; finishing the copy of their pages")
            try copier.finish()
        } catch {
            _ = try? copier.finish()  // nothing may still read or write when the error goes up
            throw error
        }
        log.info("pages copied")
        try shmem.writeAll(images: images, pages: pages)
        if !namespaces.newKinds.contains(.ipc), let ipc = namespaces.rootID(.ipc) { try HostSysVShm.dump(shmem.sysv, root: tree.root, id: ipc, images: images) }
        // The pages are stored (a page server answered CLOSE) before the dump calls itself done.
        try pages.finish()
        try files.write(to: images)
        if !seccomp.isEmpty { try images.write(.seccomp, entry: seccomp.entry) }
        if let cgroups { try images.write(.cgroup, entry: try cgroups.entry()) }
        try images.write(.pstree, entries: pstree.map(pids.image))
        try cores.writeAll(images: images)
        var inv = Img_InventoryEntry()
        inv.imgVersion = 2
        inv.fdinfoPerID = true
        inv.nsPerID = false
        inv.lsmtype = .noLsm
        guard let rootIds = ids[tree.root] else { throw DumpError.processExited(pid: tree.root, during: "freeze") }
        inv.rootIds = rootIds
        if let cgroups { inv.rootCgSet = cgroups.rootSet }
        namespaces.fillRoot(&inv.rootIds)
        inv.dumpUptime = UInt64(ProcessInfo.processInfo.systemUptime * 1_000_000)
        // A task killed while frozen read as empty (no maps, no fds) from then on.
        try TreeChecks.stillAlive(tree, proc: proc)
        // Written last: a directory without inventory.img is not a finished dump.
        try images.write(.inventory, entry: inv)
        try images.store.commit()
        return []
    }

    /// A zombie keeps only its pid, place in the tree and exit status (CRIU writes the same).
    func writeZombie(_ pid: Int32, images: ImageDirectory, proc: ProcReader, id: Int32) throws {
        let st = try proc.stat(pid: pid)
        var tc = Img_TaskCoreEntry()
        tc.taskState = TaskState.zombie.rawValue
        tc.exitCode = UInt32(bitPattern: st.exitCode)
        tc.personality = 0
        tc.flags = st.flags
        tc.blkSigset = 0
        tc.comm = st.comm
        var core = Img_CoreEntry()
        core.mtype = .x8664
        core.tc = tc
        try images.write(.core, id: Int(id), entry: core)
    }

    /// Removes what a failed dump wrote (image files only; the directory may hold other things).
    func removeImages(_ images: ImageDirectory) {
        images.store.discard()
    }
}
