import Foundation
import Glibc
import SwiftProtobuf

/// A directory of images: typed reads and writes, raw page files, and the `parent` link of
/// incremental snapshots. Every read is validated (see ImageCodec.Reader).
public struct ImageDirectory: Sendable {
    public let path: String
    /// How deep a chain of parent snapshots may go before it is taken for a loop.
    public static let maxChainDepth = 64

    /// Opens `path`; with `create`, makes it (and missing parents) first.
    public init(path: String, create: Bool = false) throws {
        if create {
            do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
                throw ImageError.io(file: path, errno: errno, what: "create images directory")
            }
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw ImageError.io(file: path, errno: errno, what: "open images directory") }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw ImageError.io(file: path, errno: ENOTDIR, what: "open images directory") }
        self.path = path
    }

    public func filePath(_ kind: ImageKind, _ id: Int? = nil) -> String { path + "/" + kind.fileName(id) }

    public func exists(_ kind: ImageKind, _ id: Int? = nil) -> Bool { access(filePath(kind, id), F_OK) == 0 }

    // MARK: typed entries

    public func write<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, entries: [M]) throws {
        try writeBytes(filePath(kind, id), try ImageCodec.encode(kind, entries))
    }

    public func write<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, entry: M) throws {
        try write(kind, id: id, entries: [entry])
    }

    public func read<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, as type: M.Type) throws -> [M] {
        let file = filePath(kind, id)
        var r = ImageCodec.Reader(file: file, bytes: try readBytes(file))
        try r.readHeader(kind)
        return try r.all(type)
    }

    /// Reads an image that must hold exactly one entry.
    public func readOne<M: SwiftProtobuf.Message>(_ kind: ImageKind, id: Int? = nil, as type: M.Type) throws -> M {
        let file = filePath(kind, id)
        var r = ImageCodec.Reader(file: file, bytes: try readBytes(file))
        try r.readHeader(kind)
        let e = try r.next(type)
        guard r.atEnd else { throw ImageError.inconsistent(file: file, offset: r.offset, reason: "more than one entry") }
        return e
    }

    // MARK: pagemap (a head, then entries)

    public func writePagemap(pid: Int32, pagesID: UInt32, entries: [Img_PagemapEntry]) throws {
        var head = Img_PagemapHead()
        head.pagesID = pagesID
        var out = ImageCodec.header(.pagemap)
        try ImageCodec.appendEntry(&out, head)
        for e in entries { try ImageCodec.appendEntry(&out, e) }
        try writeBytes(filePath(.pagemap, Int(pid)), out)
    }

    /// Reads a pagemap and checks its entries: page-aligned, ascending, not overlapping.
    public func readPagemap(pid: Int32) throws -> (pagesID: UInt32, entries: [Img_PagemapEntry]) {
        let file = filePath(.pagemap, Int(pid))
        var r = ImageCodec.Reader(file: file, bytes: try readBytes(file))
        try r.readHeader(.pagemap)
        let head = try r.next(Img_PagemapHead.self)
        var entries: [Img_PagemapEntry] = []
        var lastEnd: UInt64 = 0
        while !r.atEnd {
            let at = r.offset
            let e = try r.next(Img_PagemapEntry.self)
            let (len, o1) = UInt64(e.nrPages).multipliedReportingOverflow(by: pageSize)
            let (end, o2) = e.vaddr.addingReportingOverflow(len)
            guard e.vaddr % pageSize == 0, e.nrPages > 0, !o1, !o2, end <= 1 << 57 else {
                throw ImageError.inconsistent(file: file, offset: at, reason: "bad range 0x\(String(e.vaddr, radix: 16)) x \(e.nrPages) pages")
            }
            guard e.vaddr >= lastEnd else {
                throw ImageError.inconsistent(file: file, offset: at, reason: "entry at 0x\(String(e.vaddr, radix: 16)) overlaps or is out of order")
            }
            lastEnd = end
            entries.append(e)
        }
        return (head.pagesID, entries)
    }

    // MARK: raw pages

    /// A new pages file, opened for writing; the caller closes it.
    public func createPagesFile(id: Int) throws -> Int32 {
        let file = filePath(.pages, id)
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd < 0 { throw ImageError.io(file: file, errno: errno, what: "create") }
        return fd
    }

    public func openPagesFile(id: Int) throws -> (fd: Int32, size: Int) {
        let file = filePath(.pages, id)
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw errno == ENOENT ? ImageError.missing(file: file) : ImageError.io(file: file, errno: errno, what: "open") }
        var st = stat()
        fstat(fd, &st)
        return (fd, Int(st.st_size))
    }

    // MARK: parent chain

    /// The previous snapshot, through the `parent` symlink, or nil if there is none.
    public func parent() throws -> ImageDirectory? {
        let link = path + "/parent"
        var st = stat()
        guard lstat(link, &st) == 0 else { return nil }
        var target = link
        if st.st_mode & S_IFMT == S_IFLNK {
            guard let t = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else {
                throw ImageError.chain(dir: path, reason: "cannot read the parent link")
            }
            target = t.hasPrefix("/") ? t : path + "/" + t
        }
        do { return try ImageDirectory(path: target) } catch {
            throw ImageError.chain(dir: path, reason: "parent \(target) is not an images directory: \(error)")
        }
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
        let link = path + "/parent"
        unlink(link)
        guard symlink(relativePath, link) == 0 else { throw ImageError.io(file: link, errno: errno, what: "symlink") }
    }

    static func canonical(_ p: String) -> String {
        guard let r = realpath(p, nil) else { return p }
        defer { free(r) }
        return String(cString: r)
    }

    // MARK: whole-directory checks

    /// Cross-file checks: every pstree thread has a core image, each pid an mm and pagemap, and
    /// each pagemap's data pages add up to its pages file.
    public func validateConsistency() throws {
        _ = try readOne(.inventory, as: Img_InventoryEntry.self)
        let pstreeFile = filePath(.pstree)
        let tree = try read(.pstree, as: Img_PstreeEntry.self)
        guard !tree.isEmpty else { throw ImageError.inconsistent(file: pstreeFile, offset: 8, reason: "no processes") }
        for (i, p) in tree.enumerated() {
            guard p.threads.contains(p.pid) else {
                throw ImageError.inconsistent(file: pstreeFile, offset: 8, reason: "entry \(i) (pid \(p.pid)): threads \(p.threads) do not include the pid")
            }
            for t in p.threads {
                guard exists(.core, Int(t)) else { throw ImageError.missing(file: filePath(.core, Int(t))) }
                _ = try readOne(.core, id: Int(t), as: Img_CoreEntry.self)
            }
            let core = try readOne(.core, id: Int(p.pid), as: Img_CoreEntry.self)
            if core.hasTc && core.tc.taskState == TaskState.zombie.rawValue { continue }
            _ = try readOne(.mm, id: Int(p.pid), as: Img_MmEntry.self)
            let (pagesID, entries) = try readPagemap(pid: Int32(p.pid))
            let pages = entries.filter { !$0.inParent }.reduce(UInt64(0)) { $0 + UInt64($1.nrPages) }
            let pf = try openPagesFile(id: Int(pagesID))
            close(pf.fd)
            guard UInt64(pf.size) == pages * pageSize else {
                throw ImageError.inconsistent(file: filePath(.pages, Int(pagesID)), offset: pf.size,
                                              reason: "\(filePath(.pagemap, Int(p.pid))) lists \(pages) pages (\(pages * pageSize) bytes), the file has \(pf.size)")
            }
        }
    }

    // MARK: file I/O

    func readBytes(_ file: String) throws -> [UInt8] {
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw errno == ENOENT ? ImageError.missing(file: file) : ImageError.io(file: file, errno: errno, what: "open") }
        defer { close(fd) }
        var st = stat()
        fstat(fd, &st)
        var buf = [UInt8](repeating: 0, count: Int(st.st_size))
        var off = 0
        while off < buf.count {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + off, $0.count - off, off_t(off)) }
            if n < 0 { if errno == EINTR { continue }; throw ImageError.io(file: file, errno: errno, what: "read") }
            if n == 0 { break }
            off += n
        }
        return Array(buf.prefix(off))
    }

    /// Written to a temporary name and renamed, so a reader never sees half an image.
    func writeBytes(_ file: String, _ bytes: [UInt8]) throws {
        let tmp = file + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd < 0 { throw ImageError.io(file: tmp, errno: errno, what: "create") }
        do {
            try bytes.withUnsafeBytes { p in
                do { try writeAll(fd: fd, p.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, p.count) } catch {
                    throw ImageError.io(file: tmp, errno: (error as? SystemCallError)?.errno ?? EIO, what: "write")
                }
            }
        } catch { close(fd); unlink(tmp); throw error }
        close(fd)
        guard rename(tmp, file) == 0 else { let e = errno; unlink(tmp); throw ImageError.io(file: file, errno: e, what: "rename") }
    }
}

/// task_state values in core images (CRIU's).
public enum TaskState: UInt32, Sendable {
    case alive = 1, dead = 2, stopped = 3, zombie = 6
}
