import CKernel
import Glibc
import Logging

/// `cryo dedup`: frees, in the parents of a snapshot, the pages a newer snapshot overwrote.
/// A page is punched out of snapshot L only when snapshot L-1 (its direct child in the chain)
/// holds that page's bytes itself: then no snapshot newer than L can reach L's copy, because
/// resolving walks in-parent entries down the chain and stops at L-1. So the snapshot asked
/// for, and every snapshot between it and L, restores exactly as before. Holes are punched
/// with the file size kept (CRIU does the same), so offsets in pagemaps stay valid.
public struct Deduplicator {
    public let imagesDir: String
    let log = Logger(label: "dedup")
    public init(imagesDir: String) { self.imagesDir = imagesDir }

    public struct Stats: Sendable {
        public var punchedBytes: UInt64 = 0
        public var filesTouched = 0
    }

    @discardableResult
    public func run() throws -> Stats {
        let top = try ImageDirectory(path: imagesDir)
        let chain = try top.chain()
        var stats = Stats()
        guard chain.count > 1 else { return stats }
        for pid in try top.ids(of: .pagemap) {
            for level in 1..<chain.count {
                let child = chain[level - 1], parent = chain[level]
                guard child.exists(.pagemap, pid), parent.exists(.pagemap, pid) else { continue }
                let childData = PageRuns.normalize(try child.pageMap(pid: pid).entries.filter { $0.fileOffset != nil }.map {
                    PageRun(start: $0.vaddr, end: $0.end)
                })
                let map = try parent.pageMap(pid: pid)
                var holes: [(offset: Int, length: Int)] = []
                for e in map.entries {
                    guard let base = e.fileOffset else { continue }
                    for r in PageRuns.intersect([PageRun(start: e.vaddr, end: e.end)], childData) {
                        holes.append((base + Int(r.start - e.vaddr), Int(r.length)))
                    }
                }
                guard !holes.isEmpty else { continue }
                let file = parent.filePath(.pages, Int(map.pagesID))
                let fd = open(file, O_RDWR | O_CLOEXEC)
                if fd < 0 { throw errno == ENOENT ? ImageError.missing(file: file) : ImageError.io(file: file, errno: errno, what: "open for dedup") }
                defer { close(fd) }
                for h in holes {
                    // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                    // glibc hides fallocate() without _GNU_SOURCE.
                    if ck_syscall6(SyscallNumber.fallocate.rawValue, Int(fd), 0x02 | 0x01, h.offset, h.length, 0, 0) != 0 {
                        throw ImageError.ioAt(file: file, offset: h.offset, errno: ck_errno(), what: "punch a hole of \(h.length) bytes")
                    }
                    stats.punchedBytes += UInt64(h.length)
                }
                stats.filesTouched += 1
                log.info("\(file): \(holes.count) run(s) overwritten by \(child.path) punched out")
            }
        }
        return stats
    }
}
