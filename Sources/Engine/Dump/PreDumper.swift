import CKernel
import Foundation
import Glibc
import Logging

public struct PreDumpRequest: Sendable {
    public var pid: Int32
    public var imagesDir: String
    /// The previous pre-dump, relative to imagesDir (or absolute).
    public var prevImagesDir: String?
    /// A unix datagram socket of the caller's that holds tracking between runs (TrackStore).
    public var trackStore: Int32?
    /// Send pagemaps and pages to this page server instead of writing them into imagesDir.
    public var pageServer: PageServerTarget?
    /// Write the images here instead of a folder at imagesDir (see DumpRequest.imageStore).
    public var imageStore: ImageStore?
    /// As DumpRequest's (CRIU's --freeze-cgroup and --empty-ns, which runc sends to a pre-dump too).
    public var freezeCgroup: String?
    public var emptyNamespaces: Int32 = 0
    /// CRIU's --external specs, as for dump (namespaces the tree shares on purpose).
    public var external: [String] = []
    public init(pid: Int32, imagesDir: String) { self.pid = pid; self.imagesDir = imagesDir }
}

/// `cryo pre-dump`: copies memory while the process keeps running. The task is frozen only to
/// read its mappings and to scan and re-arm dirty tracking; the pages are copied after it runs
/// on. A page written after the scan is reported by the next scan, so the next snapshot picks
/// it up; a page that cannot be read any more (unmapped meanwhile) is left out of this pagemap,
/// and the next snapshot, finding its parent lacks it, dumps it.
public struct PreDumper {
    public let request: PreDumpRequest
    let log = Logger(label: "pre-dump")
    public init(_ request: PreDumpRequest) { self.request = request }

    public struct Stats: Sendable {
        public var frozenSeconds: Double = 0
        public var pagesBytes: UInt64 = 0
        public var inParentPages: UInt64 = 0
        /// Pages that vanished or could not be read while copying.
        public var missedPages: UInt64 = 0
    }

    @discardableResult
    public func run() throws -> Stats {
        let images = try request.imageStore.map { ImageDirectory(store: $0) } ?? ImageDirectory(path: request.imagesDir, create: true)
        let proc = ProcReader()
        let transport = try PageTransports.make(images: images, pageServer: request.pageServer)
        let t0 = Date()
        let tree = try TreeFreezer.freeze(root: request.pid, proc: proc)
        var stats = Stats()
        let files = FileTable(images: images)
        var tracking: TreeTracking?
        var layouts: [(pid: Int32, mm: Img_MmEntry, pieces: [MemoryDumper.Piece])] = []
        let live = tree.processes.filter { !$0.isZombie }.map(\.pid)
        var pstree: [Img_PstreeEntry] = []
        var pids = PidMap()
        do {
            try Fault.check(.afterFreeze)
            let namespaces = try NamespaceSet.collect(root: tree.root, processes: tree.processes.map { ($0.pid, $0.threads) }, proc: proc,
                                                      externals: try Externals(parsing: request.external).namespaces)
            pids = try PidMap.read(processes: tree.processes.map { ($0.pid, $0.threads) }, inNewNamespace: namespaces.newKinds.contains(.pid), proc: proc)
            try RuntimeChecks.check(freezeCgroup: request.freezeCgroup, emptyNamespaces: request.emptyNamespaces, tree: tree)
            for p in tree.processes {
                let st = try proc.stat(pid: p.pid)
                var e = Img_PstreeEntry()
                e.pid = UInt32(p.pid); e.ppid = p.pid == tree.root ? 0 : UInt32(st.ppid)
                e.pgid = UInt32(st.pgrp); e.sid = UInt32(st.session); e.threads = p.threads.map { UInt32($0) }
                pstree.append(e)
            }
            let inc = try Incremental.prepare(pids: live, imagesDir: images, prev: request.prevImagesDir,
                                              storeFd: request.trackStore, proc: proc, pages: transport, imagePid: pids.image)
            tracking = inc.tracking
            let liveSet = Set(live)
            let cow = try CowMap.build(pairs: pstree.filter { $0.ppid != 0 && liveSet.contains(Int32($0.pid)) && liveSet.contains(Int32($0.ppid)) }
                .map { (Int32($0.pid), Int32($0.ppid)) }, proc: proc)
            // Shared anonymous memory goes into the final dump whole; a pre-dump skips it.
            let shmem = SharedMemoryDumper()
            for pid in live {
                let maps = try proc.maps(pid: pid)
                let stat = try proc.stat(pid: pid)
                let remote = try Remote(tid: pid, maps: maps)
                let brk: UInt64
                do { brk = try remote.syscall(.brk, 0) } catch { try? remote.finish(); throw error }
                try remote.finish()
                var memory = MemoryDumper(pid: pid, images: images, files: files, proc: proc, shmem: shmem, pages: transport, incremental: inc.plans[pid])
                memory.cow = cow
                let (mm, pieces) = try memory.layout(maps: maps, stat: stat, brk: brk)
                layouts.append((pid, mm, pieces))
            }
        } catch {
            log.error("pre-dump failed, resuming the tree of \(request.pid): \(error)")
            transport.abort()
            tracking?.drop()
            tree.release()
            cleanUp(images)
            throw error
        }
        tree.release()
        stats.frozenSeconds = Date().timeIntervalSince(t0)
        log.info("\(live.count) process(es) ran on after \(String(format: "%.3f", stats.frozenSeconds)) s frozen; copying")

        do {
            for (pid, mm, pieces) in layouts {
                let sink = try transport.open(.pagemap, id: Int(pids.image(pid)), pagesID: UInt32(pids.image(pid)))
                let (kept, missed) = try TolerantCopier(pid: pid).copy(pieces, to: sink)
                try sink.finish()
                stats.missedPages += missed
                stats.inParentPages += kept.filter(\.inParent).reduce(0) { $0 + $1.run.pageCount }
                if missed > 0 { log.info("pid \(pid): \(missed) page(s) could not be read while running; the next snapshot takes them") }
                try images.write(.mm, id: Int(pids.image(pid)), entry: mm)
            }
            // The pages are stored (a page server answered CLOSE) before the snapshot is called done.
            try transport.finish()
            stats.pagesBytes = transport.pagesBytes
            try files.write(to: images)
            try images.write(.pstree, entries: pstree.map(pids.image))
            var inv = Img_InventoryEntry()
            inv.imgVersion = 2
            inv.fdinfoPerID = true
            inv.lsmtype = .noLsm
            inv.dumpUptime = UInt64(ProcessInfo.processInfo.systemUptime * 1_000_000)
            // Written last: a directory without inventory.img is not a finished snapshot.
            try images.write(.inventory, entry: inv)
            try images.store.commit()
        } catch {
            log.error("pre-dump failed while copying (the tree of \(request.pid) is running, untouched): \(error)")
            transport.abort()
            tracking?.drop()
            cleanUp(images)
            throw error
        }
        do { try tracking?.park() } catch {
            log.warning("tracking could not be parked, the next snapshot will be full: \(error)")
        }
        log.info("pre-dump done: \(stats.pagesBytes) bytes of pages, \(stats.inParentPages) pages in the parent")
        return stats
    }

    func cleanUp(_ images: ImageDirectory) {
        images.store.discard()
        if request.prevImagesDir != nil { try? images.store.setParent(nil) }
    }
}

/// Copies pages of a running task: whatever cannot be read (the mapping went away or changed
/// protection meanwhile) is skipped page by page instead of failing the copy.
struct TolerantCopier {
    let pid: Int32
    let bufferSize = 32 << 20

    /// Sends the pieces that made it to `out` in order, each entry followed by its bytes; returns
    /// them (in-parent pieces pass through) and the number of pages skipped.
    func copy(_ pieces: [MemoryDumper.Piece], to out: PageSink) throws -> ([MemoryDumper.Piece], UInt64) {
        let buf = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buf.deallocate() }
        let mem = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        defer { if mem >= 0 { close(mem) } }
        var kept: [MemoryDumper.Piece] = []
        var missed: UInt64 = 0
        var batch: [MemoryDumper.Piece] = []
        var batchBytes = 0

        func keep(_ r: PageRun, readable: Bool) {
            if let last = kept.last, last.hasData, last.readable == readable, last.run.end == r.start { kept[kept.count - 1].run.end = r.end }
            else { kept.append(MemoryDumper.Piece(run: r, inParent: false, readable: readable)) }
        }
        func read(_ r: PageRun, readable: Bool, into p: UnsafeMutableRawPointer) -> Bool {
            if readable {
                let got = try? Sys.processVmRead(pid: pid, local: p, remote: r.start, len: Int(r.length))
                return got == Int(r.length)
            }
            guard mem >= 0 else { return false }
            return pread(mem, p, Int(r.length), off_t(Int64(bitPattern: r.start))) == Int(r.length)
        }
        func flush() throws {
            guard !batch.isEmpty else { return }
            var off = 0
            var whole = true
            for p in batch {
                if !read(p.run, readable: p.readable, into: buf + off) { whole = false; break }
                off += Int(p.run.length)
            }
            if whole {
                var at = 0
                for p in batch {
                    try out.add(Img_PagemapEntry(vaddr: p.run.start, nrPages: UInt32(p.run.pageCount), flags: [.present]))
                    try out.write(UnsafeRawBufferPointer(start: buf + at, count: Int(p.run.length)))
                    at += Int(p.run.length)
                    keep(p.run, readable: p.readable)
                }
            } else {
                for p in batch {
                    var a = p.run.start
                    while a < p.run.end {
                        let page = PageRun(start: a, end: a + pageSize)
                        if read(page, readable: p.readable, into: buf) {
                            try out.add(Img_PagemapEntry(vaddr: a, nrPages: 1, flags: [.present]))
                            try out.write(UnsafeRawBufferPointer(start: buf, count: Int(pageSize)))
                            keep(page, readable: p.readable)
                        } else {
                            missed += 1
                        }
                        a += pageSize
                    }
                }
            }
            batch = []
            batchBytes = 0
        }

        for p in pieces {
            if !p.hasData {
                try flush()
                kept.append(p)
                for e in MemoryDumper.pagemap([p]) { try out.add(e) }
                continue
            }
            var r = p.run
            while r.length > 0 {
                if batchBytes == bufferSize { try flush() }
                let take = min(r.length, UInt64(bufferSize - batchBytes))
                batch.append(MemoryDumper.Piece(run: PageRun(start: r.start, end: r.start + take), inParent: false, readable: p.readable))
                batchBytes += Int(take)
                r.start += take
            }
        }
        try flush()
        return (kept, missed)
    }
}
