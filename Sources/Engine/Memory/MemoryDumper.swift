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
    /// Copy-on-write sharing in the tree (see CowMap).
    var cow = CowMap()

    func dump(maps: [ProcMapping], stat: ProcStat, brk: UInt64, pagesID: Int) throws -> Img_MmEntry {
        var mm = Img_MmEntry()
        mm.mmStartCode = stat.startCode; mm.mmEndCode = stat.endCode
        mm.mmStartData = stat.startData; mm.mmEndData = stat.endData
        mm.mmStartStack = stat.startStack; mm.mmStartBrk = stat.startBrk; mm.mmBrk = brk
        mm.mmArgStart = stat.argStart; mm.mmArgEnd = stat.argEnd
        mm.mmEnvStart = stat.envStart; mm.mmEnvEnd = stat.envEnd
        mm.mmSavedAuxv = try proc.auxv(pid: pid)
        mm.exeFileID = try files.register(path: try proc.exe(pid: pid), pid: pid, flags: O_RDONLY, source: "/proc/\(pid)/exe")

        let smaps = (try? proc.smaps(pid: pid)) ?? []
        let growsDown = Set(smaps.filter { $0.vmFlags.contains("gd") }.map(\.mapping.start))
        // A MAP_NORESERVE mapping may be far larger than memory (sparse reservations).
        let noReserve = Set(smaps.filter { $0.vmFlags.contains("nr") }.map(\.mapping.start))
        let scanner = try PageScanner(pid: pid)
        defer { scanner.close() }

        var pagemap: [Img_PagemapEntry] = []
        var batches: [(runs: [PageRun], readable: Bool)] = []
        for m in maps {
            var v = Img_VmaEntry()
            v.start = m.start; v.end = m.end; v.pgoff = m.offset; v.shmid = 0; v.fd = -1
            v.prot = (m.readable ? 1 : 0) | (m.writable ? 2 : 0) | (m.executable ? 4 : 0)
            v.flags = UInt32(m.shared ? MAP_SHARED : MAP_PRIVATE)
            if growsDown.contains(m.start) { v.flags |= UInt32(MAP_GROWSDOWN) }
            if noReserve.contains(m.start) { v.flags |= UInt32(MAP_NORESERVE) }
            var anonymousOnly = false
            switch m.path {
            case "[vdso]": v.status = VmaStatus.regular | VmaStatus.vdso
            case "[vvar]": v.status = VmaStatus.regular | VmaStatus.vvar
            case "[vvar_vclock]": v.status = VmaStatus.regular | VmaStatus.vvar | VmaStatus.vvarVclock
            case "[vsyscall]": v.status = VmaStatus.vsyscall
            case "[heap]": v.status = VmaStatus.regular | VmaStatus.anonPrivate | VmaStatus.heap; v.flags |= UInt32(MAP_ANONYMOUS)
            case "[stack]": v.status = VmaStatus.regular | VmaStatus.anonPrivate | VmaStatus.stack; v.flags |= UInt32(MAP_ANONYMOUS)
            default:
                if m.shared && m.path.hasPrefix("/") && m.inode != 0 && !m.isDeleted && !m.path.hasPrefix("/memfd:")
                    && !m.path.hasPrefix("/dev/zero") && !m.path.hasPrefix("/SYSV") {
                    // Shared file pages live in the file itself: nothing to copy.
                    v.status = VmaStatus.regular | VmaStatus.fileShared
                    v.shmid = UInt64(try files.register(path: m.path, pid: pid, flags: m.writable ? O_RDWR : O_RDONLY, mapping: m))
                    mm.vmas.append(v)
                    continue
                }
                if SharedMemoryDumper.isSharedAnonymous(m) {
                    v.status = VmaStatus.regular | VmaStatus.anonShared
                    v.flags |= UInt32(MAP_ANONYMOUS)
                    v.shmid = shmem.register(m, pid: pid)
                    mm.vmas.append(v)
                    continue
                }
                if m.shared {
                    throw DumpError.unsupported(pid: pid, what: "shared mapping \(m.permString) \(m.path.isEmpty ? "(anonymous)" : m.path) at 0x\(String(m.start, radix: 16))")
                }
                if m.isAnonymous || m.path.hasPrefix("[anon:") {
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
            mm.vmas.append(v)
            if v.status & (VmaStatus.vdso | VmaStatus.vvar | VmaStatus.vsyscall) != 0 { continue }
            var runs = try scanner.dataRuns(start: m.start, end: m.end, anonymousOnly: anonymousOnly)
            if runs.isEmpty { continue }
            var entries = [(run: PageRun, flags: PagemapFlags)]()
            var pinFree: [PageRun] = []
            if let shared = cow.withParent[pid], m.readable {
                let (own, theirs) = CowMap.split(runs, by: shared)
                runs = own
                entries = own.map { ($0, .present) } + theirs.map { ($0, .cowParent) }
                entries.sort { $0.run.start < $1.run.start }
            } else {
                entries = runs.map { ($0, .present) }
            }
            if let shared = cow.withChildren[pid], m.readable {
                (runs, pinFree) = CowMap.split(runs, by: shared)
            }
            for (r, f) in entries {
                pagemap.append(Img_PagemapEntry(vaddr: r.start, nrPages: UInt32(r.pageCount), flags: f))
            }
            // The pages file follows the pagemap's order, so pages read without pinning go in
            // their place: batches are cut wherever the reading method changes.
            let ordered = (runs.map { ($0, m.readable) } + pinFree.map { ($0, false) }).sorted { $0.0.start < $1.0.start }
            for (r, readable) in ordered {
                if let last = batches.last, last.readable == readable {
                    batches[batches.count - 1].runs.append(r)
                } else {
                    batches.append(([r], readable))
                }
            }
        }

        let fd = try images.createPagesFile(id: pagesID)
        defer { close(fd) }
        let copier = PageCopier(pid: pid)
        for b in batches {
            if b.readable { try copier.copy(b.runs, to: fd) } else { try copyThroughMem(b.runs, to: fd) }
        }
        try images.writePagemap(pid: pid, pagesID: UInt32(pagesID), entries: pagemap)
        return mm
    }

    /// Pages the task cannot read itself (PROT_NONE, exec-only) come through /proc/PID/mem,
    /// which reads with FOLL_FORCE.
    func copyThroughMem(_ runs: [PageRun], to out: Int32) throws {
        let mem = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        if mem < 0 { throw SystemCallError(call: "open", errno: errno, context: "/proc/\(pid)/mem") }
        defer { close(mem) }
        let chunk = 4 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buf.deallocate() }
        for r in runs {
            var addr = r.start
            while addr < r.end {
                let n = Int(min(UInt64(chunk), r.end - addr))
                let got = pread(mem, buf, n, off_t(Int64(bitPattern: addr)))
                guard got == n else {
                    throw DumpError.memoryChanged(pid: pid, detail: "read \(got) of \(n) bytes at 0x\(String(addr, radix: 16)) through /proc/\(pid)/mem")
                }
                try writeAll(fd: out, buf, n)
                addr += UInt64(n)
            }
        }
    }
}
