import CKernel
import Glibc

/// A thread's CPU affinity (taskset, MPI rank pinning), read and set from cryo by tid. A mask
/// holding every online CPU is not kept: such a thread may run anywhere, and comes back so on
/// a machine with other CPUs. Any other mask is set exactly and read back.
enum CpuAffinity {
    static let words = 16  // 1024 CPUs
    /// Read once per run: every thread of a dump or restore is compared with it.
    static let online = Result { try ProcReader().onlineCPUs() }

    static func read(tid: Int32) throws -> [UInt64] {
        var mask = [UInt64](repeating: 0, count: words)
        _ = try mask.withUnsafeMutableBytes { p in
            try Sys.call(.schedGetaffinity, Int(tid), p.count, Int(bitPattern: p.baseAddress!), context: "tid \(tid)")
        }
        while mask.last == 0 { mask.removeLast() }
        return mask
    }

    static func cpus(_ mask: [UInt64]) -> Set<Int> {
        var out: Set<Int> = []
        for (w, v) in mask.enumerated() { for b in 0..<64 where v & (1 << UInt64(b)) != 0 { out.insert(w * 64 + b) } }
        return out
    }

    static func mask(_ cpus: Set<Int>) -> [UInt64] {
        var m = [UInt64](repeating: 0, count: (cpus.max() ?? 0) / 64 + 1)
        for c in cpus { m[c / 64] |= 1 << UInt64(c % 64) }
        return m
    }

    /// The mask for the image: empty when every online CPU is in it.
    static func dumped(tid: Int32) throws -> [UInt64] {
        let m = try read(tid: tid)
        return cpus(m).isSuperset(of: try online.get()) ? [] : m
    }

    static func set(tid: Int32, _ m: [UInt64]) throws {
        let what = "tid \(tid): CPU affinity \(cpus(m).sorted())"
        var buf = m
        _ = try buf.withUnsafeMutableBytes { p in
            try Sys.call(.schedSetaffinity, Int(tid), p.count, Int(bitPattern: p.baseAddress!), context: what)
        }
    }

    /// The dumped mask, exactly; an unrestricted thread gets every online CPU again (it may have
    /// inherited a restored parent's pinning, or cryo's).
    static func apply(tid: Int32, _ core: Img_ThreadCoreEntry) throws {
        guard core.hasSchedPolicy else { return }  // an image of a cryo that kept no scheduling state
        if core.cpuAffinity.isEmpty {
            let all = try online.get()
            if !cpus(try read(tid: tid)).isSuperset(of: all) { try set(tid: tid, mask(all)) }
            return
        }
        try set(tid: tid, core.cpuAffinity)
        let got = try read(tid: tid)
        guard got == core.cpuAffinity else {
            throw RestoreError.unsupported("tid \(tid): CPU affinity came back as \(cpus(got).sorted()), not \(cpus(core.cpuAffinity).sorted())")
        }
    }
}
