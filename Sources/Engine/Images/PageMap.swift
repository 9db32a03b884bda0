/// A task's validated pagemap: ascending, non-overlapping, page-aligned entries, each with
/// the offset of its bytes in the pages file when it has any.
public struct PageMap: Sendable {
    public struct Entry: Sendable {
        public let entry: Img_PagemapEntry
        /// Where the entry's frame starts in the pagemap file, for errors.
        public let frameOffset: Int
        /// Offset of the entry's first byte in pages-`pagesID`.img; nil if the bytes are not there.
        public let fileOffset: Int?

        public var vaddr: UInt64 { entry.vaddr }
        public var nrPages: UInt32 { entry.nrPages }
        public var flags: PagemapFlags { entry.pageFlags }
        /// Validated not to overflow when the map was read.
        public var end: UInt64 { entry.vaddr + UInt64(entry.nrPages) * UInt64(imagePageSize) }
    }

    public let pid: Int
    /// The pagemap file, for errors.
    public let file: String
    public let pagesID: UInt32
    public let entries: [Entry]
    /// Bytes the pages file must hold: the pages of every entry with data.
    public let dataBytes: Int

    /// Entries that intersect [start, end), in order.
    public func entries(overlapping start: UInt64, _ end: UInt64) -> ArraySlice<Entry> {
        // First entry ending after `start`: entries are sorted and disjoint, so ends ascend too.
        var lo = 0, hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].end <= start { lo = mid + 1 } else { hi = mid }
        }
        var last = lo
        while last < entries.count && entries[last].vaddr < end { last += 1 }
        return entries[lo..<last]
    }

    /// The entry holding `vaddr`, if any.
    public func entry(containing vaddr: UInt64) -> Entry? {
        entries(overlapping: vaddr, vaddr &+ 1).first
    }
}

/// A run of a task's pages and the file that holds their bytes, after the parent chain.
public struct PageSegment: Sendable {
    public struct Source: Sendable {
        public let directory: ImageDirectory
        public let pagesID: UInt32
        /// Offset of the run's first byte in the pages file.
        public let offset: Int
        /// 0 for the directory asked, 1 for its parent...
        public let depth: Int
    }

    public let vaddr: UInt64
    public let nrPages: UInt64
    public let lazy: Bool
    /// nil for lazy pages the images do not hold, and for pages of the parent process.
    public let source: Source?
    /// The pages are the parent process's, shared copy-on-write when dumped (cowParent).
    public var fromParentProcess = false

    public var byteCount: Int { Int(nrPages) * imagePageSize }
}
