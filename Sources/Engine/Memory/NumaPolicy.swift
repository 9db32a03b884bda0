/// NUMA memory policies: a thread's (set_mempolicy, what `numactl --membind/--interleave`
/// leaves) and each VMA's own (mbind). Read by get_mempolicy injected into the task, with the
/// mode flags the kernel ORs into the mode; set again the same way and read back, so a policy
/// the kernel does not take fails the restore instead of going unnoticed.
enum NumaPolicy {
    /// Bits of node mask passed each way: MAX_NUMNODES of distribution kernels is 1024.
    static let maxNodes: UInt64 = 4096
    static let mpolFAddr: UInt64 = 2

    /// (mode, nodes) of the thread, or of the VMA holding `address`; nodes trimmed of zero words.
    static func read(_ r: Remote, at scratch: UInt64, address: UInt64?) throws -> (UInt32, [UInt64]) {
        try r.syscall(.getMempolicy, scratch, scratch + 8, maxNodes, address ?? 0, address == nil ? 0 : mpolFAddr)
        let b = try r.readMemory(at: scratch, count: 8 + Int(maxNodes / 8))
        var words = (0..<Int(maxNodes / 64)).map { b.u64(at: 8 + 8 * $0) }
        while words.last == 0 { words.removeLast() }
        return (UInt32(truncatingIfNeeded: b.u64(at: 0) & 0xffff_ffff), words)
    }

    /// The mappings with a policy of their own (not the default, which follows the thread's),
    /// by start address.
    static func readMappings(_ maps: [ProcMapping], remote: Remote) throws -> [UInt64: (UInt32, [UInt64])] {
        let scratch = try remote.scratch()
        var out: [UInt64: (UInt32, [UInt64])] = [:]
        for m in maps where !["[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"].contains(m.path) {
            let (mode, nodes) = try read(remote, at: scratch, address: m.start)
            if mode != 0 { out[m.start] = (mode, nodes) }
        }
        return out
    }

    /// set_mempolicy for the thread, or mbind over `range`; then read back.
    static func set(_ t: RestoreTarget, mode: UInt32, nodes: [UInt64], range: (UInt64, UInt64)?) throws {
        var mask: [UInt8] = []
        for w in nodes { mask.putU64(w) }
        let m = try t.put(mask.isEmpty ? [0] : mask, offset: 512)
        let what = range.map { "VMA 0x\(String($0.0, radix: 16))-0x\(String($0.1, radix: 16))" } ?? "thread"
        do {
            if let (s, e) = range {
                try t.remote.syscall(.mbind, s, e - s, UInt64(mode), m, UInt64(nodes.count * 64 + 1), 0)
            } else {
                try t.remote.syscall(.setMempolicy, UInt64(mode), m, UInt64(nodes.count * 64 + 1))
            }
        } catch {
            throw RestoreError.unsupported("tid \(t.pid): NUMA policy 0x\(String(mode, radix: 16)) nodes \(nodes) of the \(what): \(error)")
        }
        let got = try read(t.remote, at: t.scratch + 1024, address: range?.0)
        guard got.0 == mode && got.1 == nodes else {
            throw RestoreError.unsupported("tid \(t.pid): NUMA policy of the \(what) came back as 0x\(String(got.0, radix: 16)) \(got.1), not 0x\(String(mode, radix: 16)) \(nodes)")
        }
    }
}
