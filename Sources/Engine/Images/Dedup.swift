import CKernel
import Glibc
import Logging

/// `cryo dedup`: frees, in the parents of a snapshot, the pages a newer snapshot overwrote.
/// A page is punched out of snapshot L when some snapshot newer than L (up to the one asked
/// for) holds that page's bytes itself. Restoring the snapshot asked for never reads L's copy
/// then: resolving walks in-parent entries from the newest snapshot down and stops at the first
/// one with the bytes, which is newer than L. So that snapshot restores exactly as before; its
/// ancestors lose the pages they shared with newer ones, as with CRIU's dedup. Holes are
/// punched with the file size kept (CRIU does the same), so offsets in pagemaps stay valid.
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
            // The pages newer snapshots hold themselves, growing as we walk down the chain.
            var newerData: [PageRun] = []
            for level in 1..<chain.count {
                let child = chain[level - 1], parent = chain[level]
                if child.exists(.pagemap, pid) {
                    newerData = PageRuns.normalize(newerData + (try child.pageMap(pid: pid).entries.filter { $0.fileOffset != nil }.map {
                        PageRun(start: $0.vaddr, end: $0.end)
                    }))
                }
                guard parent.exists(.pagemap, pid) else { continue }
                let childData = newerData
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
                log.info("\(file): \(holes.count) run(s) overwritten by newer snapshots punched out")
            }
        }
        return stats
    }
}
