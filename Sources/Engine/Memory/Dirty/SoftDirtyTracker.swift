import Glibc
import Logging

/// Tracking with the soft-dirty bit (pagemap bit 55), where the kernel has CONFIG_MEM_SOFT_DIRTY.
/// Writing 4 to clear_refs clears the bit in every page table of the task; a write sets it
/// again. A mapping created after the clear starts soft-dirty as a whole (VM_SOFTDIRTY), so it
/// is reported written and dumped whole. Nothing needs holding between runs: the parcel carries
/// only the armed ranges.
public final class SoftDirtyTracker: DirtyTracker {
    public let pid: Int32
    public let backend = DirtyTrackingBackend.softDirty
    private var recorded: [PageRun]
    static let softDirtyBit: UInt64 = 1 << 55
    static let presentBits: UInt64 = (1 << 63) | (1 << 62)

    init(pid: Int32, parcel: TrackParcel?) throws {
        self.pid = pid
        recorded = parcel.map { PageRuns.normalize($0.armed) } ?? []
        parcel?.closeFds()
    }

    public func close() {}

    public func scan(mappings: [PageRun]) throws -> DirtyScan {
        let tracked = PageRuns.intersect(PageRuns.normalize(mappings), recorded)
        let path = "/proc/\(pid)/pagemap"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw DirtyTrackingError.kernel(pid: pid, call: "open \(path)", errno: errno, range: nil) }
        defer { Glibc.close(fd) }
        var written: [PageRun] = []
        let batch = 1 << 16
        var words = [UInt64](repeating: 0, count: batch)
        for r in tracked {
            var page = r.start / pageSize
            let endPage = r.end / pageSize
            while page < endPage {
                let n = Int(min(UInt64(batch), endPage - page))
                let got = words.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n * 8, off_t(page * 8)) }
                guard got == n * 8 else {
                    throw DirtyTrackingError.kernel(pid: pid, call: "read \(path)", errno: got < 0 ? errno : EIO, range: PageRun(start: page * pageSize, end: endPage * pageSize))
                }
                for i in 0..<n where words[i] & SoftDirtyTracker.softDirtyBit != 0 && words[i] & SoftDirtyTracker.presentBits != 0 {
                    let a = (page + UInt64(i)) * pageSize
                    if let last = written.last, last.end == a { written[written.count - 1].end = a + pageSize } else { written.append(PageRun(start: a, end: a + pageSize)) }
                }
                page += UInt64(n)
            }
        }
        try clear()
        return DirtyScan(tracked: tracked, written: written)
    }

    public func arm(mappings: [PageRun], remote: Remote) throws {
        try clear()
        recorded = PageRuns.normalize(mappings)
    }

    func clear() throws {
        let path = "/proc/\(pid)/clear_refs"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        if fd < 0 { throw DirtyTrackingError.kernel(pid: pid, call: "open \(path)", errno: errno, range: nil) }
        defer { Glibc.close(fd) }
        guard write(fd, "4", 1) == 1 else { throw DirtyTrackingError.kernel(pid: pid, call: "write 4 to \(path)", errno: errno, range: nil) }
    }

    public func parcel(startTime: UInt64) -> TrackParcel {
        TrackParcel(pid: pid, startTime: startTime, backend: backend, fds: [], armed: recorded)
    }
}
