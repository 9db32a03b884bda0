import Foundation
import Glibc
import Logging

/// Turns the fresh child (a copy of cryo) into the dumped address space: moves the vDSO block
/// to its dumped place, unmaps everything else, maps each VMA, fills the pages, applies the
/// final protections and the mm fields (PR_SET_MM_MAP).
struct AddressSpace {
    let target: RestoreTarget
    let plan: Restorer.Plan
    let images: ImageDirectory
    let proc: ProcReader
    var shmem: SharedMemoryObjects? = nil
    /// Hands cryo's objects to a task that may not open them as /proc/CRYO/fd/N.
    var transport: FdTransport? = nil
    /// The restore's objects, where memfds a VMA maps are made (once, for fds and mappings).
    var objects: RestoredObjects? = nil
    let log = Logger(label: "restore")

    static let taskSize: UInt64 = 0x7fff_ffff_f000
    static let specialStatus = VmaStatus.vdso | VmaStatus.vvar | VmaStatus.vsyscall

    var pid: Int32 { target.pid }
    /// The restored parent as cryo sees it (its pid differs from the images' in a pid namespace).
    var parentHostPid: Int32?
    var remote: Remote { target.remote }

    /// VMAs the task got from its parent by fork exactly as its image has them: they stay, with
    /// the pages it still shares copy-on-write, and only its own pages are written over them.
    var inherited: [Img_VmaEntry] = []
    /// Shared by every task of the restore.
    var fillBuffers = FillBuffers()

    func build() throws {
        try remote.dropScratch()  // cloning children may have made one; everything goes
        let (low, high) = try moveSpecials()
        // Everything else goes: cryo's mappings, or the parent's that are not the task's.
        var keep = [(low, high)] + inherited.map { ($0.start, $0.end) }
        keep.sort { $0.0 < $1.0 }
        var at: UInt64 = 0
        for (s, e) in keep {
            if s > at { try remote.syscall(.munmap, at, s - at) }
            at = max(at, e)
        }
        if at < AddressSpace.taskSize { try remote.syscall(.munmap, at, AddressSpace.taskSize - at) }

        target.scratch = try remote.scratch(at: try scratchAddress(low: low, high: high), size: RestoreTarget.scratchSize)
        let vmas = plan.mm.vmas.filter { $0.status & AddressSpace.specialStatus == 0 }
        let kept = Set(inherited.map(\.start))
        for (i, v) in vmas.enumerated() where !kept.contains(v.start) {
            let touchesPrev = i > 0 && vmas[i - 1].end == v.start
            let touchesNext = i + 1 < vmas.count && vmas[i + 1].start == v.end && kept.contains(vmas[i + 1].start)
            try map(v, apart: touchesPrev || touchesNext)
        }
        let rw = UInt32(PROT_READ | PROT_WRITE)
        for v in inherited {
            if v.prot != rw { try remote.syscall(.mprotect, v.start, v.end - v.start, UInt64(rw)) }
            // What the task did not have there reads as zero (or as the file), not as the parent's.
            var holeStart = v.start
            for e in plan.pagemap where e.vaddr < v.end && e.vaddr + UInt64(e.nrPages) * 4096 > v.start {
                if e.vaddr > holeStart { try remote.syscall(.madvise, holeStart, e.vaddr - holeStart, UInt64(MADV_DONTNEED)) }
                holeStart = max(holeStart, e.vaddr + UInt64(e.nrPages) * 4096)
            }
            if holeStart < v.end { try remote.syscall(.madvise, holeStart, v.end - holeStart, UInt64(MADV_DONTNEED)) }
        }
        try setMM()
    }

    /// The pages, written while the VMAs are still writable. Touches only memory, never the
    /// tracee's registers, so it may run on another thread while the tracer goes on.
    func fill() throws {
        guard let pages = plan.pages else { throw RestoreError.layout(pid: pid, reason: "no pages to restore from") }
        try PageFiller(pid: pid, buffers: fillBuffers).fill(from: pages)
        // Pages shared with the parent process outside inherited VMAs (the parent's VMA
        // differed) are copied from it instead. A run may span several VMAs, only some of
        // them inherited: what counts is each page, not where its run starts.
        let runs = PageRuns.partition(pages.segments.filter(\.fromParentProcess).map { PageRun(start: $0.vaddr, end: $0.vaddr + $0.nrPages * 4096) }.sorted { $0.start < $1.start },
                                by: inherited.map { PageRun(start: $0.start, end: $0.end) }.sorted { $0.start < $1.start }).outside
        if !runs.isEmpty { try copyFromParent(runs) }
    }

    /// The final protections and the VMAs' advice, once the pages are in and every child
    /// has been cloned (MADV_DONTFORK and MADV_WIPEONFORK must not act on restore's own forks).
    func protect() throws {
        for v in plan.mm.vmas where v.hasMempolicyMode && v.status & AddressSpace.specialStatus == 0 {
            try NumaPolicy.set(target, mode: v.mempolicyMode, nodes: v.mempolicyNodes, range: (v.start, v.end))
        }
        let rw = UInt32(PROT_READ | PROT_WRITE)
        for v in plan.mm.vmas where v.status & (AddressSpace.specialStatus | VmaStatus.fileShared | VmaStatus.anonShared | VmaStatus.sysvipc) == 0 && v.prot != rw {
            try remote.syscall(.mprotect, v.start, v.end - v.start, UInt64(v.prot))
        }
        for v in plan.mm.vmas where v.madv != 0 && v.status & AddressSpace.specialStatus == 0 {
            for a in VmaFlags.advice(v.madv) {
                do { try remote.syscall(.madvise, v.start, v.end - v.start, UInt64(a)) } catch {
                    throw RestoreError.layout(pid: pid, reason: "madvise(0x\(String(v.start, radix: 16))-0x\(String(v.end, radix: 16)), \(a)) of the dumped VMA: \(error)")
                }
            }
        }
        // Locked last, with every page in (the task is still root: its own memlock limit
        // and uid come back later, as they had been when it locked).
        for v in plan.mm.vmas where v.flags & UInt32(MAP_LOCKED) != 0 && v.status & AddressSpace.specialStatus == 0 {
            do { try remote.syscall(.mlock, v.start, v.end - v.start) } catch {
                throw RestoreError.layout(pid: pid, reason: "mlock(0x\(String(v.start, radix: 16))-0x\(String(v.end, radix: 16))) of the dumped VMA: \(error)")
            }
        }
    }

    /// Moves [vvar], [vvar_vclock] and [vdso] by one offset, keeping their layout, so the
    /// vDSO's references to its data pages stay right. Returns the block's bounds.
    func moveSpecials() throws -> (UInt64, UInt64) {
        let mine = try proc.maps(pid: pid).filter { ["[vvar]", "[vvar_vclock]", "[vdso]"].contains($0.path) }
        let theirs = plan.mm.vmas.filter { $0.status & (VmaStatus.vdso | VmaStatus.vvar) != 0 }
        if theirs.isEmpty, !mine.isEmpty { return try keepSpecialsUntilTheEnd(mine) }
        guard let myVdso = mine.first(where: { $0.path == "[vdso]" }),
              let theirVdso = theirs.first(where: { $0.status & VmaStatus.vdso != 0 }) else {
            throw RestoreError.layout(pid: pid, reason: "no [vdso] in the images or in the new task")
        }
        guard mine.count == theirs.count,
              zip(mine, theirs).allSatisfy({ $0.size == $1.end - $1.start && Int64(bitPattern: $0.start &- myVdso.start) == Int64(bitPattern: $1.start &- theirVdso.start) }) else {
            throw RestoreError.layout(pid: pid, reason: "the vDSO layout differs from the dumped one (dumped on another kernel?)")
        }
        let delta = Int64(bitPattern: theirVdso.start &- myVdso.start)
        if delta != 0 {
            // Move in the order that never lands on a piece not moved yet.
            let order = delta > 0 ? mine.sorted { $0.start > $1.start } : mine.sorted { $0.start < $1.start }
            for m in order {
                let dest = UInt64(bitPattern: Int64(bitPattern: m.start) &+ delta)
                try remote.syscall(.mremap, m.start, m.size, m.size, 3 /* MREMAP_MAYMOVE|MREMAP_FIXED */, dest)
                // Our syscall instruction lives in the vDSO: follow it at once.
                if m.path == "[vdso]" { remote.relocate(by: delta) }
            }
        }
        let lo = theirs.map(\.start).min()!, hi = theirs.map(\.end).max()!
        return (lo, hi)
    }

    /// The task had unmapped its vDSO and vvar. Ours hold the syscall instruction every
    /// injected call goes through, so they stay (moved out of the way of the dumped VMAs if
    /// need be) and are unmapped by the task's very last injected call.
    func keepSpecialsUntilTheEnd(_ mine: [ProcMapping]) throws -> (UInt64, UInt64) {
        var lo = mine.map(\.start).min()!, hi = mine.map(\.end).max()!
        if plan.mm.vmas.contains(where: { $0.start < hi && lo < $0.end }) {
            let dest = try freeRange(size: hi - lo, avoiding: [(lo, hi)])
            let delta = Int64(bitPattern: dest &- lo)
            for m in mine.sorted(by: { $0.start < $1.start }) {
                let to = UInt64(bitPattern: Int64(bitPattern: m.start) &+ delta)
                try remote.syscall(.mremap, m.start, m.size, m.size, 3 /* MREMAP_MAYMOVE|MREMAP_FIXED */, to)
                if m.path == "[vdso]" { remote.relocate(by: delta) }
            }
            (lo, hi) = (dest, dest + (hi - lo))
        }
        remote.unmapOnFinish.append((lo, hi - lo))
        return (lo, hi)
    }

    /// A spot for the scratch page that no dumped VMA uses.
    func scratchAddress(low: UInt64, high: UInt64) throws -> UInt64 {
        try freeRange(size: UInt64(RestoreTarget.scratchSize), avoiding: [(low, high)])
    }

    /// An address range that no dumped VMA (nor `avoiding`) uses.
    func freeRange(size: UInt64, avoiding extra: [(UInt64, UInt64)]) throws -> UInt64 {
        let busy = plan.mm.vmas.map { ($0.start, $0.end) } + extra
        var cand: UInt64 = 0x10000
        while cand + size < AddressSpace.taskSize {
            if let hit = busy.first(where: { $0.0 < cand + size && cand < $0.1 }) {
                cand = (hit.1 + 0xffff) & ~0xffff
            } else {
                return cand
            }
        }
        throw RestoreError.layout(pid: pid, reason: "no room for a scratch page")
    }

    /// Maps one VMA, writable for now so the pages can be filled. `apart`: it touches the
    /// previous VMA, which the kernel would merge it with if the flags match; dumped VMAs were
    /// Pages the process shared copy-on-write with its parent when dumped: the parent is
    /// restored first, so its memory at the same address holds them.
    func copyFromParent(_ runs: [PageRun]) throws {
        let parent = parentHostPid ?? plan.ppid
        guard parent != 0 else {
            throw RestoreError.layout(pid: pid, reason: "pages marked as the parent's, but the process has no parent in the tree")
        }
        let chunk = 4 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { buf.deallocate() }
        for r in runs {
            var at = r.start
            let end = r.end
            while at < end {
                let n = Int(min(UInt64(chunk), end - at))
                let got = try Sys.processVmRead(pid: parent, local: buf, remote: at, len: n)
                guard got == n else { throw RestoreError.layout(pid: pid, reason: "reading the parent's page at 0x\(String(at, radix: 16)): \(got) of \(n) bytes") }
                let put = try Sys.processVmWrite(pid: pid, local: buf, remote: at, len: n)
                guard put == n else { throw RestoreError.layout(pid: pid, reason: "writing the parent's page at 0x\(String(at, radix: 16)): \(put) of \(n) bytes") }
                at += UInt64(n)
            }
        }
    }

    /// separate, so it is mapped elsewhere and moved into place, which gives it a page offset
    /// that does not continue its neighbour's, and the kernel keeps the two apart.
    func map(_ v: Img_VmaEntry, apart: Bool = false) throws {
        let len = v.end - v.start
        let prot = UInt64(PROT_READ | PROT_WRITE)
        var flags = UInt64(MAP_FIXED) | (v.flags & VmaFlags.mapDroppable != 0 ? UInt64(VmaFlags.mapDroppable) : UInt64(MAP_PRIVATE))
        if v.flags & UInt32(MAP_GROWSDOWN) != 0 { flags |= UInt64(MAP_GROWSDOWN) }
        if v.flags & UInt32(MAP_NORESERVE) != 0 { flags |= UInt64(MAP_NORESERVE) }
        if v.status & VmaStatus.filePrivate != 0 {
            guard let f = plan.files[UInt32(truncatingIfNeeded: v.shmid)] else {
                throw RestoreError.layout(pid: pid, reason: "mapping at 0x\(String(v.start, radix: 16)) has no file")
            }
            let fd = try openObject(try mappedPath(f, v), flags: O_RDONLY)
            defer { _ = try? remote.syscall(.close, UInt64(fd)) }
            try remote.syscall(.mmap, v.start, len, prot, flags, UInt64(fd), v.pgoff)
        } else if v.status & VmaStatus.fileShared != 0 {
            // Mapped with its final protection: a shared mapping is never filled from images.
            guard let f = plan.files[UInt32(truncatingIfNeeded: v.shmid)] else {
                throw RestoreError.layout(pid: pid, reason: "mapping at 0x\(String(v.start, radix: 16)) has no file")
            }
            let writable = v.prot & UInt32(PROT_WRITE) != 0
            let fd = try openObject(try mappedPath(f, v), flags: writable ? O_RDWR : O_RDONLY)
            defer { _ = try? remote.syscall(.close, UInt64(fd)) }
            let sflags = UInt64(MAP_SHARED | MAP_FIXED)
            try remote.syscall(.mmap, v.start, len, UInt64(v.prot), sflags, UInt64(fd), v.pgoff)
        } else if v.status & VmaStatus.anonShared != 0 {
            // The object cryo made and filled; mapped with its final protection.
            guard let path = shmem?.path(v.shmid) else {
                throw RestoreError.layout(pid: pid, reason: "shared memory \(v.shmid) at 0x\(String(v.start, radix: 16)) was not prepared")
            }
            let fd = try openObject(path, flags: O_RDWR)
            defer { _ = try? remote.syscall(.close, UInt64(fd)) }
            try remote.syscall(.mmap, v.start, len, UInt64(v.prot), UInt64(MAP_SHARED | MAP_FIXED), UInt64(fd), v.pgoff)
        } else if v.status & VmaStatus.sysvipc != 0 {
            try SysVShmAttach.attach(v, of: plan.mm.vmas, remote: remote, pid: pid)
        } else if v.status & VmaStatus.anonPrivate != 0 {
            if apart {
                let tmp = try freeRange(size: len + 0x10_0000, avoiding: [(target.scratch, target.scratch + UInt64(RestoreTarget.scratchSize))]) + 0x8_0000
                try remote.syscall(.mmap, tmp, len, prot, flags | UInt64(MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
                // Only a faulted VMA keeps its page offset through mremap; the page is dropped again.
                try remote.writeMemory([0], at: tmp)
                try remote.syscall(.mremap, tmp, len, len, 3 /* MREMAP_MAYMOVE|MREMAP_FIXED */, v.start)
                try remote.syscall(.madvise, v.start, 4096, UInt64(MADV_DONTNEED))
            } else {
                try remote.syscall(.mmap, v.start, len, prot, flags | UInt64(MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
            }
        } else {
            throw RestoreError.unsupported("mapping at 0x\(String(v.start, radix: 16)) with status 0x\(String(v.status, radix: 16))")
        }
    }

    /// open(2) in the task, except for cryo's own fds (/proc/CRYO/fd/N) in a task of a user
    /// namespace of its own: the kernel lets no task there reach into cryo's fds (ptrace
    /// access across user namespaces), so the fd itself is sent.
    func openObject(_ path: String, flags: Int32) throws -> Int32 {
        let mine = "/proc/\(getpid())/fd/"
        if path.hasPrefix(mine), let n = Int32(path.dropFirst(mine.count)), let transport,
           proc.namespaceInode(pid: pid, "user") != proc.namespaceInode(pid: getpid(), "user") {
            return try transport.send(n, to: target, what: path)
        }
        return try target.openFile(path, flags: flags)
    }

    /// The path the task opens to map `f`: a file's own, or cryo's fd of a memfd.
    private func mappedPath(_ f: Img_FileEntry, _ v: Img_VmaEntry) throws -> String {
        guard v.status & VmaStatus.memfd != 0 else { return f.reg.name }
        guard f.type == .memfd, let objects else {
            throw RestoreError.layout(pid: pid, reason: "memfd mapping at 0x\(String(v.start, radix: 16)): file \(f.id) is not a memfd")
        }
        let fd = try MemFd.object(f.memfd.inodeID, objects: objects, what: "memfd mapped at 0x\(String(v.start, radix: 16))")
        return "/proc/\(getpid())/fd/\(fd)"
    }

    /// PR_SET_MM_MAP: code/data/brk/stack/arg/env bounds, auxv and the exe link, in one call.
    func setMM() throws {
        let mm = plan.mm
        guard let exe = plan.files[mm.exeFileID] else {
            throw RestoreError.layout(pid: pid, reason: "no exe file (id \(mm.exeFileID)) in files.img")
        }
        // A forked child already has the right exe, and still maps it: the kernel refuses to
        // replace an exe that is mapped (EBUSY), and -1 leaves it as it is.
        let current = try? proc.exe(pid: pid)
        let same = current.map { $0 == exe.reg.name || $0 == exe.reg.name + " (deleted)" } ?? false
        let exeFd: Int32 = same ? -1 : try target.openFile(exe.reg.name, flags: O_RDONLY)
        defer { if exeFd >= 0 { _ = try? remote.syscall(.close, UInt64(exeFd)) } }
        var auxv: [UInt8] = []
        for w in mm.mmSavedAuxv { auxv.putU64(w) }
        let auxvAddr = try target.put(auxv, offset: 4096)
        var b: [UInt8] = []
        for v in [mm.mmStartCode, mm.mmEndCode, mm.mmStartData, mm.mmEndData, mm.mmStartBrk, mm.mmBrk,
                  mm.mmStartStack, mm.mmArgStart, mm.mmArgEnd, mm.mmEnvStart, mm.mmEnvEnd] { b.putU64(v) }
        b.putU64(auxvAddr)
        b.putU32(UInt32(auxv.count))
        b.putU32(UInt32(bitPattern: exeFd))
        let addr = try target.put(b, offset: 8192)
        try remote.syscall(.prctl, 35 /* PR_SET_MM */, 14 /* PR_SET_MM_MAP */, addr, UInt64(b.count), 0)
    }
}
