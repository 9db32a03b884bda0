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

extension Img_PagemapEntry {
    /// CRIU 4.2 writes the page count as `optional uint64 nr_pages = 5` and leaves field 2
    /// (now `compat_nr_pages`) 0; its readers take field 5 when present. Our schema knows only
    /// field 2, so field 5 arrives among the unknown fields: nil when it is not there.
    var criu42NrPages: UInt64? {
        let b = [UInt8](unknownFields.data)
        var i = 0
        func varint() -> UInt64? {
            var v: UInt64 = 0, shift: UInt64 = 0
            while i < b.count && shift < 64 {
                let c = b[i]; i += 1
                v |= UInt64(c & 0x7f) << shift
                if c & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }
        var found: UInt64?
        while i < b.count {
            guard let tag = varint() else { return found }
            switch tag & 7 {
            case 0: guard let v = varint() else { return found }; if tag >> 3 == 5 { found = v }
            case 1: i += 8
            case 2: guard let n = varint(), n <= UInt64(b.count - i) else { return found }; i += Int(n)
            case 5: i += 4
            default: return found
            }
        }
        return found
    }
}
