/// Pages a forked child still shares copy-on-write with its parent: same address, same
/// physical page. They are in the parent's image already, so the child's pagemap only points
/// at them (PagemapFlags.cowParent) and restore copies them from the restored parent.
enum CowPages {
    /// Splits `runs` of `pid` into the pages it owns and the ones shared with `parent`.
    static func split(_ runs: [PageRun], pid: Int32, parent: Int32, proc: ProcReader) throws -> (own: [PageRun], shared: [PageRun]) {
        var own: [PageRun] = [], shared: [PageRun] = []
        func add(_ list: inout [PageRun], _ start: UInt64, _ end: UInt64) {
            if let last = list.last, last.end == start { list[list.count - 1] = PageRun(start: last.start, end: end) } else { list.append(PageRun(start: start, end: end)) }
        }
        let present: UInt64 = 1 << 63, pfnMask: UInt64 = (1 << 55) - 1
        for r in runs {
            var at = r.start
            while at < r.end {
                let n = Int(min(UInt64(65536), (r.end - at) / 4096))
                let mine = try proc.pagemapWords(pid: pid, start: at, count: n)
                let theirs = try proc.pagemapWords(pid: parent, start: at, count: n)
                for i in 0..<n {
                    let a = at + UInt64(i) * 4096
                    let same = mine[i] & present != 0 && theirs[i] & present != 0
                        && mine[i] & pfnMask != 0 && mine[i] & pfnMask == theirs[i] & pfnMask
                    if same { add(&shared, a, a + 4096) } else { add(&own, a, a + 4096) }
                }
                at += UInt64(n) * 4096
            }
        }
        return (own, shared)
    }
}
