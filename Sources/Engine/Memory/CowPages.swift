import Glibc

/// Pages a forked child still shares copy-on-write with its parent: same address, same
/// physical page. They are in the parent's image already, so the child's pagemap only points
/// at them (PagemapFlags.cowParent), and restore forks the child from its rebuilt parent so
/// they are shared again.
///
/// The map is made for the whole frozen tree before any memory is read: process_vm_readv pins
/// pages, and pinning a shared anonymous page makes the kernel unshare it (a private copy for
/// the reader's target), which would both hide the sharing and grow a tree left running. So
/// the shared pages of a parent are read through /proc/PID/mem, which does not pin.
struct CowMap {
    /// Per process: runs it shares with its parent (not dumped again).
    var withParent: [Int32: [PageRun]] = [:]
    /// Per process: runs it shares with one of its children (read without pinning).
    var withChildren: [Int32: [PageRun]] = [:]

    static func build(pairs: [(child: Int32, parent: Int32)], proc: ProcReader) throws -> CowMap {
        var map = CowMap()
        let present: UInt64 = 1 << 63, pfnMask: UInt64 = (1 << 55) - 1
        for (child, parent) in pairs {
            let theirs = Set(try proc.maps(pid: parent).filter { $0.readable && !$0.shared }.map { [$0.start, $0.end] })
            var shared: [PageRun] = []
            let mineMap = try proc.openPagemap(pid: child), otherMap = try proc.openPagemap(pid: parent)
            defer { close(mineMap.fd); close(otherMap.fd) }
            for m in try proc.maps(pid: child) where m.readable && !m.shared && theirs.contains([m.start, m.end]) {
                var at = m.start
                while at < m.end {
                    let n = Int(min(UInt64(65536), (m.end - at) / 4096))
                    let mine = try proc.pagemapWords(mineMap, start: at, count: n)
                    let other = try proc.pagemapWords(otherMap, start: at, count: n)
                    for i in 0..<n where mine[i] & present != 0 && other[i] & present != 0
                        && mine[i] & pfnMask != 0 && mine[i] & pfnMask == other[i] & pfnMask {
                        let a = at + UInt64(i) * 4096
                        if let last = shared.last, last.end == a { shared[shared.count - 1].end = a + 4096 } else { shared.append(PageRun(start: a, end: a + 4096)) }
                    }
                    at += UInt64(n) * 4096
                }
            }
            if shared.isEmpty { continue }
            map.withParent[child] = shared
            map.withChildren[parent] = PageRuns.normalize((map.withChildren[parent] ?? []) + shared)
        }
        return map
    }
}
