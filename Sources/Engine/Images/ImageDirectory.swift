import Foundation
import Glibc
import SwiftProtobuf

/// A directory of images: typed reads and writes, raw page files, and the `parent` link of
/// incremental snapshots. Every read is validated (see ImageCodec.Reader). The bytes go to and
/// come from its `store` (ImageStore): a local folder unless made with `init(store:)`.
public struct ImageDirectory: Sendable {
    public let path: String
    public let store: ImageStore
    /// How deep a chain of parent snapshots may go. Loops are caught by name, not by this; it
    /// only bounds damaged input (snapshot chains of thousands are fine: restore keeps one
    /// pages file open per snapshot and raises its fd limit for that).
    public static let maxChainDepth = 4096

    /// Opens `path`; with `create`, makes it (and missing parents) first.
    public init(path: String, create: Bool = false) throws {
        self.init(store: try LocalImageStore(path: path, create: create))
    }

    /// Images kept by `store` (a stream, a cache...); `path` is its location.
    public init(store: ImageStore) {
        self.store = store
        path = store.location
    }

    public func filePath(_ kind: ImageKind, _ id: Int? = nil) -> String { path + "/" + kind.fileName(id) }

    public func exists(_ kind: ImageKind, _ id: Int? = nil) -> Bool { store.exists(kind.fileName(id)) }

    // MARK: listing

    /// One file of the directory, with the image it stands for when the name is one of ours.
    public struct File: Sendable, Hashable {
        public let name: String
        public let kind: ImageKind?
        public let id: Int?
    }

    /// The directory's files, sorted by name; temporary files of unfinished writes are left out.
    public func files() throws -> [File] {
        return try store.names().filter { !$0.hasSuffix(".tmp") }.sorted().map { name in
            let parsed = ImageKind.parse(fileName: name)
            return File(name: name, kind: parsed?.kind, id: parsed?.id)
        }
    }

    /// The ids present for a kind (pids of core images, pages ids...), ascending.
    public func ids(of kind: ImageKind) throws -> [Int] {
        try files().filter { $0.kind == kind }.compactMap(\.id).sorted()
    }

    // MARK: typed entries

    public func write<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, entries: [M]) throws {
        try writeBytes(filePath(kind, id), try ImageCodec.encode(kind, entries))
    }

    public func write<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, entry: M) throws {
        try write(kind, id: id, entries: [entry])
    }

    public func read<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, as type: M.Type) throws -> [M] {
        try readWithOffsets(kind, id: id, as: type).map(\.entry)
    }

    /// Entries with the byte offset of each frame, for errors that point into the file.
    public func readWithOffsets<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, as type: M.Type) throws -> [(offset: Int, entry: M)] {
        var r = try reader(kind, id)
        var out: [(offset: Int, entry: M)] = []
        while !r.atEnd {
            let at = r.offset
            out.append((at, try r.next(type)))
        }
        return out
    }

    /// Reads an image that must hold exactly one entry.
    public func readOne<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, as type: M.Type) throws -> M {
        var r = try reader(kind, id)
        let e = try r.next(type)
        guard r.atEnd else { throw ImageError.inconsistent(file: r.file, offset: r.offset, reason: "more than one entry") }
        return e
    }

    /// Any image with a header, decoded with the message types its kind declares: what a
    /// generic tool (`cryo image decode`) needs.
    public func readAny(_ kind: ImageKind, id: Int? = nil) throws -> (head: (any SwiftProtobuf.Message)?, entries: [any SwiftProtobuf.Message]) {
        guard let entryType = kind.entryType else {
            throw ImageError.inconsistent(file: filePath(kind, id), offset: 0, reason: "raw image, it has no entries")
        }
        var r = try reader(kind, id)
        var head: (any SwiftProtobuf.Message)?
        if let headType = kind.headType { head = try r.next(dynamic: headType) }
        var entries: [any SwiftProtobuf.Message] = []
        if kind.hasRawTail { return (head, [try r.next(dynamic: entryType)]) }
        while !r.atEnd {
            let e = try r.next(dynamic: entryType)
            if let len = kind.payloadLength { _ = try r.raw(len(e)) } else { _ = try IpcImages.payload(kind, e, &r) }
            entries.append(e)
        }
        return (head, entries)
    }

    // MARK: entries followed by raw bytes (pipe data, socket queues)

    public func writeWithPayloads<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, _ entries: [(M, [UInt8])]) throws {
        var out = ImageCodec.header(kind)
        for (e, data) in entries {
            try ImageCodec.appendEntry(&out, e)
            out.append(contentsOf: data)
        }
        try writeBytes(filePath(kind, id), out)
    }

    /// Entries with the bytes after each; `length` says how many bytes an entry announces.
    public func readWithPayloads<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, as type: M.Type, length: (M) -> Int) throws -> [(M, [UInt8])] {
        var r = try reader(kind, id)
        var out: [(M, [UInt8])] = []
        while !r.atEnd {
            let e = try r.next(type)
            out.append((e, try r.raw(length(e))))
        }
        return out
    }

    func reader(_ kind: ImageKind, _ id: Int?) throws -> ImageCodec.Reader {
        let file = filePath(kind, id)
        var r = ImageCodec.Reader(file: file, bytes: try readBytes(file))
        try r.readHeader(kind)
        return r
    }

    // MARK: pagemap (a head, then entries)

    /// A process's pagemap, or (kind .shmemPagemap, id the shmid) a shared memory object's,
    /// whose vaddrs are offsets into the object.
    public func writePagemap(pid: Int32, pagesID: UInt32, entries: [Img_PagemapEntry]) throws {
        try writePagemap(id: Int(pid), pagesID: pagesID, entries: entries, kind: .pagemap)
    }

    public func writePagemap(id: Int, pagesID: UInt32, entries: [Img_PagemapEntry], kind: ImageKind) throws {
        var head = Img_PagemapHead()
        head.pagesID = pagesID
        var out = ImageCodec.header(kind)
        try ImageCodec.appendEntry(&out, head)
        for e in entries { try ImageCodec.appendEntry(&out, e) }
        try writeBytes(filePath(kind, id), out)
    }

    /// Reads a pagemap and checks its entries: page-aligned, ascending, not overlapping.
    public func readPagemap(pid: Int32) throws -> (pagesID: UInt32, entries: [Img_PagemapEntry]) {
        let map = try pageMap(pid: Int(pid))
        return (map.pagesID, map.entries.map(\.entry))
    }

    /// The pagemap of `pid`, validated, with where each entry's bytes sit in the pages file.
    public func pageMap(pid: Int, kind: ImageKind = .pagemap) throws -> PageMap {
        let file = filePath(kind, pid)
        return try Self.parsePageMap(bytes: try readBytes(file), file: file, pid: pid, kind: kind)
    }

    /// `pageMap` on bytes already read (`file` names them in errors).
    public static func parsePageMap(bytes: [UInt8], file: String, pid: Int, kind: ImageKind = .pagemap) throws -> PageMap {
        var r = ImageCodec.Reader(file: file, bytes: bytes)
        try r.readHeader(kind)
        let head = try r.next(Img_PagemapHead.self)
        var entries: [PageMap.Entry] = []
        var lastEnd: UInt64 = 0
        var dataOffset = 0
        let page = UInt64(imagePageSize)
        while !r.atEnd {
            let at = r.offset
            var e = try r.next(Img_PagemapEntry.self)
            if let n = e.criu42NrPages {
                guard n <= UInt64(UInt32.max) else {
                    throw ImageError.inconsistent(file: file, offset: at, reason: "entry at 0x\(String(e.vaddr, radix: 16)) holds \(n) pages, more than cryo handles in one entry")
                }
                e.nrPages = UInt32(n)
            }
            let (len, o1) = UInt64(e.nrPages).multipliedReportingOverflow(by: page)
            let (end, o2) = e.vaddr.addingReportingOverflow(len)
            // 57 bits: the largest user address space x86_64 has (5-level paging).
            guard e.vaddr % page == 0, e.nrPages > 0, !o1, !o2, end <= 1 << 57 else {
                throw ImageError.inconsistent(file: file, offset: at, reason: "bad range 0x\(String(e.vaddr, radix: 16)) x \(e.nrPages) pages")
            }
            guard e.vaddr >= lastEnd else {
                throw ImageError.inconsistent(file: file, offset: at, reason: "entry at 0x\(String(e.vaddr, radix: 16)) overlaps or is out of order")
            }
            let flags = e.pageFlags
            guard !(flags.contains(.parent) && flags.contains(.present)) else {
                throw ImageError.inconsistent(file: file, offset: at, reason: "entry at 0x\(String(e.vaddr, radix: 16)) is both in the parent and present")
            }
            lastEnd = end
            // Bounded by the 57-bit address check above, so this cannot overflow.
            entries.append(PageMap.Entry(entry: e, frameOffset: at, fileOffset: e.hasData ? dataOffset : nil))
            if e.hasData { dataOffset += Int(len) }
        }
        return PageMap(pid: pid, file: file, pagesID: head.pagesID, entries: entries, dataBytes: dataOffset)
    }

    // MARK: raw pages

    /// A new pages-`id`.img, written by range; it appears when the writer finishes.
    public func pagesWriter(id: UInt32) throws -> ImageWriter {
        try store.create(ImageKind.pages.fileName(Int(id)))
    }

    public func pagesReader(id: UInt32) throws -> PagesReader {
        let (fd, size) = try store.open(ImageKind.pages.fileName(Int(id)))
        return PagesReader(fd: fd, size: size, file: filePath(.pages, Int(id)))
    }

    /// The caller closes the fd.
    public func openPagesFile(id: Int) throws -> (fd: Int32, size: Int) {
        try store.open(ImageKind.pages.fileName(id))
    }

    /// The size of pages-`id`.img, without copying an image held in memory.
    public func pagesSize(id: UInt32) throws -> Int {
        if let m = mappedPages(id: Int(id)) { return m.count }
        let (fd, size) = try openPagesFile(id: Int(id))
        close(fd)
        return size
    }

    /// A pages file already in memory (ImageStore.mapped), or nil.
    public func mappedPages(id: Int) -> UnsafeRawBufferPointer? { store.mapped(ImageKind.pages.fileName(id)) }

    // MARK: parent chain

    /// The previous snapshot, through the `parent` symlink, or nil if there is none.
    public func parent() throws -> ImageDirectory? {
        try store.parent().map { ImageDirectory(store: $0) }
    }

    /// This directory followed by its ancestors. Loops and over-long chains are errors.
    public func chain() throws -> [ImageDirectory] {
        var out = [self]
        var seen: Set<String> = [ImageDirectory.canonical(path)]
        var cur = self
        while let p = try cur.parent() {
            let c = ImageDirectory.canonical(p.path)
            if seen.contains(c) { throw ImageError.chain(dir: path, reason: "loop through \(p.path)") }
            if out.count >= ImageDirectory.maxChainDepth {
                throw ImageError.chain(dir: path, reason: "deeper than \(ImageDirectory.maxChainDepth) snapshots")
            }
            guard p.exists(.inventory) else { throw ImageError.chain(dir: path, reason: "\(p.path) has no inventory.img") }
            seen.insert(c)
            out.append(p)
            cur = p
        }
        return out
    }

    public func setParent(relativePath: String) throws {
        try store.setParent(relativePath)
    }

    /// Where every stored page of `pid` comes from, with in-parent entries resolved through
    /// the chain: ascending runs, each taken from exactly one directory's pages file. Runs
    /// without a source are lazy pages the images do not hold (a lazy-pages server has them).
    public func resolvePages(pid: Int) throws -> [PageSegment] {
        let dirs = try chain()
        var maps: [Int: PageMap] = [:]
        func map(_ level: Int) throws -> PageMap {
            if let m = maps[level] { return m }
            let m = try dirs[level].pageMap(pid: pid)
            maps[level] = m
            return m
        }
        struct Piece { var vaddr: UInt64; var pages: UInt64; var level: Int; var lazy: Bool; var origin: (file: String, offset: Int)? }
        let page = UInt64(imagePageSize)
        var work = try map(0).entries.reversed().map {
            Piece(vaddr: $0.vaddr, pages: UInt64($0.nrPages), level: 0, lazy: false, origin: nil)
        }
        var out: [PageSegment] = []
        // Each piece either ends here or moves one level down, and the chain is bounded: this ends.
        while let p = work.popLast() {
            let end = p.vaddr + p.pages * page
            guard p.level < dirs.count else {
                let o = p.origin ?? (path, 0)
                throw ImageError.inconsistent(file: o.file, offset: o.offset, reason: "pages 0x\(String(p.vaddr, radix: 16))-0x\(String(end, radix: 16)) are marked in the parent, but there is no parent snapshot")
            }
            let m = try map(p.level)
            var cursor = p.vaddr
            for e in m.entries(overlapping: p.vaddr, end) {
                guard e.vaddr <= cursor else { break }
                let pieceEnd = min(end, e.end)
                let n = (pieceEnd - cursor) / page
                let lazy = p.lazy || e.flags.contains(.lazy)
                if e.flags.contains(.cowParent) {
                    var seg = PageSegment(vaddr: cursor, nrPages: n, lazy: false, source: nil)
                    seg.fromParentProcess = true
                    out.append(seg)
                } else if e.flags.contains(.parent) {
                    work.append(Piece(vaddr: cursor, pages: n, level: p.level + 1, lazy: lazy, origin: (m.file, e.frameOffset)))
                } else {
                    let source = e.fileOffset.map {
                        PageSegment.Source(directory: dirs[p.level], pagesID: m.pagesID, offset: $0 + Int(cursor - e.vaddr), depth: p.level)
                    }
                    out.append(PageSegment(vaddr: cursor, nrPages: n, lazy: lazy, source: source))
                }
                cursor = pieceEnd
            }
            guard cursor == end else {
                let o = p.origin ?? (m.file, 0)
                throw ImageError.inconsistent(file: o.file, offset: o.offset, reason: "pages 0x\(String(cursor, radix: 16))-0x\(String(end, radix: 16)) are marked in the parent, but \(m.file) does not have them")
            }
        }
        return out.sorted { $0.vaddr < $1.vaddr }
    }

    static func canonical(_ p: String) -> String {
        guard let r = realpath(p, nil) else { return p }
        defer { free(r) }
        return String(cString: r)
    }

    // MARK: file I/O

    /// `file` is a path this directory's `filePath` gave; other paths are read from disk.
    func readBytes(_ file: String) throws -> [UInt8] {
        if let name = name(of: file) { return try store.read(name) }
        return try Self.readFile(file)
    }

    /// The image name of a path inside this directory.
    func name(of file: String) -> String? {
        let prefix = path + "/"
        guard file.hasPrefix(prefix) else { return nil }
        let name = String(file.dropFirst(prefix.count))
        return name.contains("/") ? nil : name
    }

    /// A whole image file, refused above ImageCodec.maxImageSize.
    public static func readFile(_ file: String) throws -> [UInt8] {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw errno == ENOENT ? ImageError.missing(file: file) : ImageError.io(file: file, errno: errno, what: "open") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ImageError.io(file: file, errno: errno, what: "stat") }
        let size = Int(st.st_size)
        guard size <= ImageCodec.maxImageSize else { throw ImageError.tooLarge(file: file, size: size, limit: ImageCodec.maxImageSize) }
        var buf = [UInt8](repeating: 0, count: size)
        var off = 0
        while off < buf.count {
            let n = buf.withUnsafeMutableBytes { p -> Int in
                guard let base = p.baseAddress else { return 0 }
                return pread(fd, base + off, p.count - off, off_t(off))
            }
            if n < 0 { if errno == EINTR { continue }; throw ImageError.ioAt(file: file, offset: off, errno: errno, what: "read") }
            if n == 0 { break }
            off += n
        }
        return off == buf.count ? buf : Array(buf.prefix(off))
    }

    /// Written to a temporary name and renamed, so a reader never sees half an image.
    func writeBytes(_ file: String, _ bytes: [UInt8]) throws {
        if let name = name(of: file) { return try store.write(name, bytes) }
        let w = try PagesWriter(file: file)
        do {
            try w.write(bytes)
            try w.finish()
        } catch { w.abort(); throw error }
    }
}

/// task_state values in core images (CRIU's).
public enum TaskState: UInt32, Sendable {
    case alive = 1, dead = 2, stopped = 3, zombie = 6
}
