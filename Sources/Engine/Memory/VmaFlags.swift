/// VMA flags set by madvise, mlock or mseal, which restore does not set again: a mapping
/// with one is refused at dump, named, rather than coming back without it.
enum VmaFlags {
    /// smaps VmFlags mnemonic -> what sets it.
    static let unkept: [(flag: String, what: String)] = [
        ("dc", "MADV_DONTFORK"), ("wf", "MADV_WIPEONFORK"), ("dd", "MADV_DONTDUMP"),
        ("mg", "MADV_MERGEABLE"),
        ("lo", "mlock"), ("lf", "mlock(MLOCK_ONFAULT)"), ("sl", "mseal"), ("dp", "MAP_DROPPABLE"),
        ("ss", "a shadow stack"),
    ]

    // MADV_(NO)HUGEPAGE (hg, nh) are not refused: glibc puts nh on every thread stack's guard
    // page, and they change only how memory is backed, not what it holds. Not carried yet.
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
