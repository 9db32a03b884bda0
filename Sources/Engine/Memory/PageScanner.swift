import CKernel
import Glibc

/// A run of pages in another task's address space.
public struct PageRun: Equatable, Sendable {
    public var start: UInt64
    public var end: UInt64
    public init(start: UInt64, end: UInt64) { self.start = start; self.end = end }
    public var length: UInt64 { end - start }
    public var pageCount: UInt64 { length / pageSize }
}

public let pageSize: UInt64 = 4096

/// Finds the pages of a task that hold data: present or swapped, never the shared zero page
/// (a read fault maps it; its content is known), and for file-backed private mappings only the
/// pages the task wrote (anonymous copies), since the rest comes back from the file.
/// Built on PAGEMAP_SCAN, which walks page tables in the kernel in one call per batch.
public struct PageScanner {
    public let pid: Int32
    let fd: Int32

    public init(pid: Int32) throws {
        self.pid = pid
        fd = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw SystemCallError(call: "open", errno: errno, context: "/proc/\(pid)/pagemap") }
    }

    public func close() { _ = Glibc.close(fd) }

    /// Runs of data pages inside [start, end). `anonymousOnly`: skip page-cache (file) pages.
    public func dataRuns(start: UInt64, end: UInt64, anonymousOnly: Bool) throws -> [PageRun] {
        var out: [PageRun] = []
        var regions = [ck_page_region](repeating: ck_page_region(), count: 512)
        var cursor = start
        while cursor < end {
            var inverted: UInt64 = CK_PAGE_IS_PFNZERO
            var mask: UInt64 = CK_PAGE_IS_PFNZERO
            if anonymousOnly { inverted |= CK_PAGE_IS_FILE; mask |= CK_PAGE_IS_FILE }
            var arg = ck_pm_scan_arg()
            arg.size = UInt64(MemoryLayout<ck_pm_scan_arg>.size)
            arg.start = cursor
            arg.end = end
            arg.vec_len = UInt64(regions.count)
            arg.category_inverted = inverted
            arg.category_mask = mask
            arg.category_anyof_mask = CK_PAGE_IS_PRESENT | CK_PAGE_IS_SWAPPED
            arg.return_mask = CK_PAGE_IS_PRESENT | CK_PAGE_IS_SWAPPED
            let n = regions.withUnsafeMutableBufferPointer { rp -> Int32 in
                arg.vec = UInt64(UInt(bitPattern: rp.baseAddress))
                return ck_ioctl(fd, UInt(CK_PAGEMAP_SCAN), &arg)
            }
            if n < 0 {
                throw SystemCallError(call: "ioctl(PAGEMAP_SCAN)", errno: ck_errno(),
                                      context: "pid \(pid) range 0x\(String(cursor, radix: 16))-0x\(String(end, radix: 16))")
            }
            for i in 0..<Int(n) {
                let region = PageRun(start: regions[i].start, end: regions[i].end)
                let pieces = regions[i].categories & CK_PAGE_IS_PRESENT != 0 ? [region] : try swappedData(region)
                for r in pieces {
                    // Regions differing only in returned categories (present vs swapped) come apart: join them.
                    if let last = out.last, last.end == r.start { out[out.count - 1].end = r.end } else { out.append(r) }
                }
            }
            if arg.walk_end <= cursor { break }
            cursor = arg.walk_end
        }
        return out
    }

    /// The pages of a swapped-only region that hold data. PAGEMAP_SCAN counts every swap-type
    /// pte as swapped, including the pte markers userfaultfd write-protect installs in untouched
    /// ranges (and guard markers), which hold nothing. /proc/PID/pagemap tells them apart: a
    /// marker's swap type is SWP_PTE_MARKER, the last of the 5-bit type field (31). Without
    /// CAP_SYS_ADMIN the type reads as 0 and every page is kept, which is only wasteful.
    func swappedData(_ region: PageRun) throws -> [PageRun] {
        var out: [PageRun] = []
        let batch = 1 << 15
        var words = [UInt64](repeating: 0, count: batch)
        var page = region.start / pageSize
        let endPage = region.end / pageSize
        while page < endPage {
            let n = Int(min(UInt64(batch), endPage - page))
            let got = words.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n * 8, off_t(page * 8)) }
            guard got == n * 8 else {
                throw SystemCallError(call: "pread", errno: got < 0 ? errno : EIO, context: "/proc/\(pid)/pagemap at page 0x\(String(page, radix: 16))")
            }
            for i in 0..<n {
                let w = words[i]
                let isMarker = w & (1 << 62) != 0 && w & (1 << 63) == 0 && w & 0x1f == 31
                if isMarker { continue }
                let a = (page + UInt64(i)) * pageSize
                if let last = out.last, last.end == a { out[out.count - 1].end = a + pageSize } else { out.append(PageRun(start: a, end: a + pageSize)) }
            }
            page += UInt64(n)
        }
        return out
    }
}
