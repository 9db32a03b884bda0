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
    let log = Logger(label: "restore")

    static let taskSize: UInt64 = 0x7fff_ffff_f000
    static let specialStatus = VmaStatus.vdso | VmaStatus.vvar | VmaStatus.vsyscall

    var pid: Int32 { target.pid }
    var remote: Remote { target.remote }

    func build() throws {
        let (low, high) = try moveSpecials()
        // Everything of cryo's goes; only the vDSO block stays.
        if low > 0 { try remote.syscall(.munmap, 0, low) }
        try remote.syscall(.munmap, high, AddressSpace.taskSize - high)

        target.scratch = try remote.scratch(at: try scratchAddress(low: low, high: high), size: RestoreTarget.scratchSize)
        let vmas = plan.mm.vmas.filter { $0.status & AddressSpace.specialStatus == 0 }
        var prevEnd: UInt64 = 0
        for v in vmas {
            try map(v, apart: v.start == prevEnd)
            prevEnd = v.end
        }
        let shared = vmas.filter { $0.status & VmaStatus.fileShared != 0 }

        try PageFiller(pid: pid).fill(from: plan.pages)
        for v in vmas where v.prot != UInt32(PROT_READ | PROT_WRITE) && !shared.contains(v) {
            try remote.syscall(.mprotect, v.start, v.end - v.start, UInt64(v.prot))
        }
        try setMM()
    }

    /// Moves [vvar], [vvar_vclock] and [vdso] by one offset, keeping their layout, so the
    /// vDSO's references to its data pages stay right. Returns the block's bounds.
    func moveSpecials() throws -> (UInt64, UInt64) {
        let mine = try proc.maps(pid: pid).filter { ["[vvar]", "[vvar_vclock]", "[vdso]"].contains($0.path) }
        let theirs = plan.mm.vmas.filter { $0.status & (VmaStatus.vdso | VmaStatus.vvar) != 0 }
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
    /// separate, so it is mapped elsewhere and moved into place, which gives it a page offset
    /// that does not continue its neighbour's, and the kernel keeps the two apart.
    func map(_ v: Img_VmaEntry, apart: Bool = false) throws {
        let len = v.end - v.start
        let prot = UInt64(PROT_READ | PROT_WRITE)
        var flags = UInt64(MAP_PRIVATE | MAP_FIXED)
        if v.flags & UInt32(MAP_GROWSDOWN) != 0 { flags |= UInt64(MAP_GROWSDOWN) }
        if v.flags & UInt32(MAP_NORESERVE) != 0 { flags |= UInt64(MAP_NORESERVE) }
        if v.status & VmaStatus.filePrivate != 0 {
            guard let f = plan.files[UInt32(truncatingIfNeeded: v.shmid)] else {
                throw RestoreError.layout(pid: pid, reason: "mapping at 0x\(String(v.start, radix: 16)) has no file")
            }
            let fd = try target.openFile(f.reg.name, flags: O_RDONLY)
            defer { _ = try? remote.syscall(.close, UInt64(fd)) }
            try remote.syscall(.mmap, v.start, len, prot, flags, UInt64(fd), v.pgoff)
        } else if v.status & VmaStatus.fileShared != 0 {
            // Mapped with its final protection: a shared mapping is never filled from images.
            guard let f = plan.files[UInt32(truncatingIfNeeded: v.shmid)] else {
                throw RestoreError.layout(pid: pid, reason: "mapping at 0x\(String(v.start, radix: 16)) has no file")
            }
            let writable = v.prot & UInt32(PROT_WRITE) != 0
            let fd = try target.openFile(f.reg.name, flags: writable ? O_RDWR : O_RDONLY)
            defer { _ = try? remote.syscall(.close, UInt64(fd)) }
            let sflags = UInt64(MAP_SHARED | MAP_FIXED)
            try remote.syscall(.mmap, v.start, len, UInt64(v.prot), sflags, UInt64(fd), v.pgoff)
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

    /// PR_SET_MM_MAP: code/data/brk/stack/arg/env bounds, auxv and the exe link, in one call.
    func setMM() throws {
        let mm = plan.mm
        guard let exe = plan.files[mm.exeFileID] else {
            throw RestoreError.layout(pid: pid, reason: "no exe file (id \(mm.exeFileID)) in files.img")
        }
        let exeFd = try target.openFile(exe.reg.name, flags: O_RDONLY)
        defer { _ = try? remote.syscall(.close, UInt64(exeFd)) }
        var auxv: [UInt8] = []
        for w in mm.mmSavedAuxv { auxv.putU64(w) }
        let auxvAddr = try target.put(auxv, offset: 4096)
        var b: [UInt8] = []
        for v in [mm.mmStartCode, mm.mmEndCode, mm.mmStartData, mm.mmEndData, mm.mmStartBrk, mm.mmBrk,
                  mm.mmStartStack, mm.mmArgStart, mm.mmArgEnd, mm.mmEnvStart, mm.mmEnvEnd] { b.putU64(v) }
        b.putU64(auxvAddr)
        b.putU32(UInt32(auxv.count))
        b.putU32(UInt32(exeFd))
        let addr = try target.put(b, offset: 8192)
        try remote.syscall(.prctl, 35 /* PR_SET_MM */, 14 /* PR_SET_MM_MAP */, addr, UInt64(b.count), 0)
    }
}
