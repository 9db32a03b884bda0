import Glibc

/// VMA flags set by madvise, mlock or mseal. The madvise ones are carried in the VMA's `madv`
/// bits (1 << MADV_*, as CRIU writes them) and advised again at restore; mlock (VmFlags lo) is
/// MAP_LOCKED in the VMA's flags, as CRIU has it, and locked again at restore; MAP_DROPPABLE
/// (VmFlags dp) is that mapping type in the flags, as CRIU has it, and its pages are not dumped:
/// the kernel may zero them at any moment, and CRIU restores them zeroed; the others are
/// refused at dump, named, rather than coming back without them.
enum VmaFlags {
    /// mmap's MAP_DROPPABLE (Linux 6.11), a mapping type in place of MAP_PRIVATE.
    static let mapDroppable: UInt32 = 0x08

    /// smaps VmFlags mnemonic -> what sets it.
    static let unkept: [(flag: String, what: String)] = [
        ("lf", "mlock(MLOCK_ONFAULT)"), ("sl", "mseal"),
        ("ss", "a shadow stack"),
    ]

    /// smaps VmFlags mnemonic -> the advice that sets it.
    static let advised: [(flag: String, advice: Int32)] = [
        ("sr", MADV_SEQUENTIAL), ("rr", MADV_RANDOM),
        ("dc", MADV_DONTFORK), ("wf", 18 /* MADV_WIPEONFORK */), ("dd", MADV_DONTDUMP),
        ("mg", MADV_MERGEABLE), ("hg", MADV_HUGEPAGE), ("nh", MADV_NOHUGEPAGE),
    ]

    /// The VMA's `madv` bits, by its start address.
    static func madvBits(_ smaps: [ProcSmapsEntry]) -> [UInt64: UInt64] {
        var out: [UInt64: UInt64] = [:]
        for s in smaps where !s.mapping.path.hasPrefix("[v") {
            let bits = advised.reduce(UInt64(0)) { s.hasFlag($1.flag) ? $0 | (UInt64(1) << UInt64($1.advice)) : $0 }
            if bits != 0 { out[s.mapping.start] = bits }
        }
        return out
    }

    /// The advice calls `madv` bits stand for, in a fixed order.
    static func advice(_ madv: UInt64) -> [Int32] {
        advised.map(\.advice).filter { madv & (UInt64(1) << UInt64($0)) != 0 }
    }

    static func refuseUnkept(_ smaps: [ProcSmapsEntry], pid: Int32) throws {
        for s in smaps {
            // The kernel's own special mappings ([vvar], [vdso]; pfn and I/O maps) carry
            // dd/de themselves and are made by the kernel at restore too.
            if s.mapping.path.hasPrefix("[v") || s.hasFlag("pf") || s.hasFlag("io") { continue }
            for u in unkept where s.hasFlag(u.flag) {
                throw DumpError.unsupported(pid: pid, what: "the mapping at 0x\(String(s.mapping.start, radix: 16))-0x\(String(s.mapping.end, radix: 16)) \(s.mapping.path) with \(u.what) (VmFlags \(u.flag)), which restore does not set again,")
            }
        }
    }
}
