import CKernel
import Foundation
import Glibc

/// Writes a process's VMAs (into its mm entry) and the pages that hold data (pagemap + pages).
struct MemoryDumper {
    let pid: Int32
    let images: ImageDirectory
    let files: FileTable
    let proc: ProcReader
    let shmem: SharedMemoryDumper
    /// Where the pagemap and pages go (the images directory or a page server).
    let pages: PageTransport
    /// Set for an incremental snapshot: which pages the parent chain already holds unchanged.
    var incremental: IncrementalPlan? = nil
    /// Copy-on-write sharing in the tree (see CowMap).
    var cow = CowMap()

    /// One run of pages to list in the pagemap: its bytes go to the pages file, or it is in the
    /// parent snapshot, or it is the parent process's (shared copy-on-write with it).
    struct Piece {
        var run: PageRun
        var inParent: Bool
        var fromParentProcess = false
        var hasData: Bool { !inParent && !fromParentProcess }
        /// The task can read it itself (process_vm_readv); otherwise /proc/PID/mem.
        var readable: Bool
    }

    /// The mappings dirty tracking watches: those whose pages images hold. Shared file
    /// mappings keep their pages in the file; the special mappings cannot be registered.
    /// Large, mostly empty mappings (listed in `sparse`) are left out too: arming
    /// write-protects every page of a range, which fills in page tables for all of it (1/512
    /// of its size: 128 MiB for a 64 GiB reservation); their few pages are dumped each time.
    static func trackable(_ maps: [ProcMapping], sparse: Set<UInt64>) -> [PageRun] {
        maps.filter { !$0.isSpecial && !$0.shared && !sparse.contains($0.start) }.map { PageRun(start: $0.start, end: $0.end) }
    }

    /// Start addresses of mappings over 64 MiB with less than 1/16 of their pages resident or
    /// swapped: not worth the page tables arming them would cost.
    static func sparseMappings(_ smaps: [ProcSmapsEntry]) -> Set<UInt64> {
        Set(smaps.filter { e in
            let sizeKB = e.mapping.size / 1024
            return sizeKB > 64 * 1024 && (e.rss + (e.fields["Swap"] ?? 0)) * 16 < sizeKB
        }.map(\.mapping.start))
    }

    /// The mm entry and the copy job for the pagemap and pages, which the caller
    /// runs with every other process's (PageCopier) while the tree is still frozen.
    func dump(maps: [ProcMapping], stat: ProcStat, brk: UInt64, pagesID: Int) throws -> (Img_MmEntry, PageJob) {
        let (mm, pieces) = try layout(maps: maps, stat: stat, brk: brk)
        var batches: [(runs: [PageRun], readable: Bool)] = []
        for p in pieces where p.hasData {
            if let last = batches.last, last.readable == p.readable {
                batches[batches.count - 1].runs.append(p.run)
            } else {
                batches.append(([p.run], p.readable))
            }
        }
        // pagemap-N.img: N is the pid in the images (the pages id; inside the tree's pid ns).
        let sink = try pages.open(.pagemap, id: pagesID, pagesID: UInt32(pagesID))
        return (mm, PageJob(pid: pid, stream: PageStream(sink: sink, entries: MemoryDumper.pagemap(pieces)), batches: batches))
    }

    static func pagemap(_ pieces: [Piece]) -> [Img_PagemapEntry] {
        var out: [Img_PagemapEntry] = []
        var lastFlags: PagemapFlags = []
        for p in pieces {
            let flags: PagemapFlags = p.fromParentProcess ? .cowParent : p.inParent ? .parent : .present
            if let last = out.last, lastFlags == flags, last.vaddr + UInt64(last.nrPages) * pageSize == p.run.start {
                out[out.count - 1].nrPages += UInt32(p.run.pageCount)
                continue
            }
            out.append(Img_PagemapEntry(vaddr: p.run.start, nrPages: UInt32(p.run.pageCount), flags: flags))
            lastFlags = flags
        }
        return out
    }

    /// The mm entry and, in address order, every run of pages the images must hold.
    func layout(maps: [ProcMapping], stat: ProcStat, brk: UInt64) throws -> (Img_MmEntry, [Piece]) {
        var mm = Img_MmEntry()
        mm.mmStartCode = stat.startCode; mm.mmEndCode = stat.endCode
        mm.mmStartData = stat.startData; mm.mmEndData = stat.endData
        mm.mmStartStack = stat.startStack; mm.mmStartBrk = stat.startBrk; mm.mmBrk = brk
        mm.mmArgStart = stat.argStart; mm.mmArgEnd = stat.argEnd
        mm.mmEnvStart = stat.envStart; mm.mmEnvEnd = stat.envEnd
        mm.mmSavedAuxv = try proc.auxv(pid: pid)
        mm.exeFileID = try files.register(path: try proc.exe(pid: pid), pid: pid, flags: O_RDONLY, source: "/proc/\(pid)/exe")

        let smaps = (try? proc.smaps(pid: pid)) ?? []
        try VmaFlags.refuseUnkept(smaps, pid: pid)
        let growsDown = Set(smaps.filter { $0.vmFlags.contains("gd") }.map(\.mapping.start))
        // A MAP_NORESERVE mapping may be far larger than memory (sparse reservations).
        let noReserve = Set(smaps.filter { $0.vmFlags.contains("nr") }.map(\.mapping.start))
        let locked = Set(smaps.filter { $0.vmFlags.contains("lo") }.map(\.mapping.start))
        let droppable = Set(smaps.filter { $0.vmFlags.contains("dp") }.map(\.mapping.start))
        let madv = VmaFlags.madvBits(smaps)
        let scanner = try PageScanner(pid: pid)
        defer { scanner.close() }

        var pieces: [Piece] = []
        for m in maps {
            var v = Img_VmaEntry()
            v.start = m.start; v.end = m.end; v.pgoff = m.offset; v.shmid = 0; v.fd = -1
            v.prot = (m.readable ? 1 : 0) | (m.writable ? 2 : 0) | (m.executable ? 4 : 0)
            v.flags = UInt32(m.shared ? MAP_SHARED : MAP_PRIVATE)
            if growsDown.contains(m.start) { v.flags |= UInt32(MAP_GROWSDOWN) }
            if noReserve.contains(m.start) { v.flags |= UInt32(MAP_NORESERVE) }
            if locked.contains(m.start) { v.flags |= UInt32(MAP_LOCKED) }
            if let bits = madv[m.start] { v.madv = bits }
            var anonymousOnly = false
            switch m.path {
            case "[vdso]": v.status = VmaStatus.regular | VmaStatus.vdso
            case "[vvar]": v.status = VmaStatus.regular | VmaStatus.vvar
            case "[vvar_vclock]": v.status = VmaStatus.regular | VmaStatus.vvar | VmaStatus.vvarVclock
            case "[vsyscall]": v.status = VmaStatus.vsyscall
            case "[heap]": v.status = VmaStatus.regular | VmaStatus.anonPrivate | VmaStatus.heap; v.flags |= UInt32(MAP_ANONYMOUS)
            case "[stack]": v.status = VmaStatus.regular | VmaStatus.anonPrivate | VmaStatus.stack; v.flags |= UInt32(MAP_ANONYMOUS)
            default:
                if SysVShmAttachments.isSysV(m) {
                    v.status = VmaStatus.regular | VmaStatus.sysvipc
                    v.shmid = try shmem.sysv.note(m, pid: pid)
                    mm.vmas.append(v)
                    continue
                }
                if m.shared && m.path.hasPrefix("/") && m.inode != 0 && !m.isDeleted && !m.path.hasPrefix("/memfd:")
                    && !m.path.hasPrefix("/dev/zero") && !m.path.hasPrefix("/SYSV") {
                    // Shared file pages live in the file itself: nothing to copy.
                    v.status = VmaStatus.regular | VmaStatus.fileShared
                    v.shmid = UInt64(try files.register(path: m.path, pid: pid, flags: m.writable ? O_RDWR : O_RDONLY, mapping: m))
                    mm.vmas.append(v)
                    continue
                }
                // memfds, and private mappings of shared anonymous memory: the shmem object is
                // a memfd file entry; a private one keeps its own (copied) pages too.
                if m.path.hasPrefix("/memfd:") || (m.path == MemFd.sharedAnonName && !m.shared && m.inode != 0),
                   let id = try files.registerShmemMapping(m, pid: pid) {
                    v.status = VmaStatus.regular | VmaStatus.memfd | (m.shared ? VmaStatus.fileShared : VmaStatus.filePrivate)
                    v.shmid = UInt64(id)
                    if m.shared { mm.vmas.append(v); continue }
                    anonymousOnly = true
                } else if SharedMemoryDumper.isSharedAnonymous(m) {
                    v.status = VmaStatus.regular | VmaStatus.anonShared
                    v.flags |= UInt32(MAP_ANONYMOUS)
                    v.shmid = shmem.register(m, pid: pid)
                    mm.vmas.append(v)
                    continue
                } else if m.shared {
                    throw DumpError.unsupported(pid: pid, what: "shared mapping \(m.permString) \(m.path.isEmpty ? "(anonymous)" : m.path) at 0x\(String(m.start, radix: 16))")
                } else if m.isAnonymous || m.path.hasPrefix("[anon:") {
                    v.status = VmaStatus.regular | VmaStatus.anonPrivate
                    v.flags |= UInt32(MAP_ANONYMOUS)
                } else if m.path.hasPrefix("/") {
                    v.status = VmaStatus.regular | VmaStatus.filePrivate
                    v.shmid = UInt64(try files.register(path: m.path, pid: pid, flags: m.writable ? O_RDWR : O_RDONLY, mapping: m))
                    anonymousOnly = true
                } else {
                    throw DumpError.unsupported(pid: pid, what: "mapping \(m.path) at 0x\(String(m.start, radix: 16))")
                }
            }
            if droppable.contains(m.start) { v.flags = v.flags & ~UInt32(MAP_PRIVATE) | VmaFlags.mapDroppable }
            mm.vmas.append(v)
            if v.status & (VmaStatus.vdso | VmaStatus.vvar | VmaStatus.vsyscall) != 0 || droppable.contains(m.start) { continue }
            let runs = try scanner.dataRuns(start: m.start, end: m.end, anonymousOnly: anonymousOnly)
            if runs.isEmpty { continue }
            var here: [Piece] = []
            var own = runs
            if let shared = cow.withParent[pid], m.readable {
                let (mine, theirs) = PageRuns.partition(runs, by: shared)
                own = mine
                here += theirs.map { Piece(run: $0, inParent: false, fromParentProcess: true, readable: true) }
            }
            let split = incremental.map { PageRuns.split(own, by: $0.unchanged) } ?? own.map { ($0, false) }
            for (r, inParent) in split {
                // Pages a child still shares are read without pinning (see CowMap).
                if !inParent, m.readable, let shared = cow.withChildren[pid] {
                    let (plain, pinFree) = PageRuns.partition([r], by: shared)
                    here += plain.map { Piece(run: $0, inParent: false, readable: true) }
                    here += pinFree.map { Piece(run: $0, inParent: false, readable: false) }
                } else {
                    here.append(Piece(run: r, inParent: inParent, readable: m.readable))
                }
            }
            pieces += here.sorted { $0.run.start < $1.run.start }
        }
        return (mm, pieces)
    }

}
