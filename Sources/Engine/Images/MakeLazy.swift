import Foundation
import Glibc

/// `cryo image make-lazy IN OUT` (CRIU's `crit make-lazy`): a copy of a checkpoint without the
/// pages a lazy restore serves (LazyPolicy); their pagemap entries say PE_LAZY and hold no
/// bytes. Each process's pages are flattened through IN's parent chain, so OUT stands alone
/// for them; restoring OUT needs `cryo lazy-pages` reading IN (or a page server on IN).
public struct MakeLazy {
    public struct Result: Sendable {
        public var inBytes: Int
        public var outBytes: Int
        public var lazyPages: Int
        public var keptPages: Int
    }

    public let input: String
    public let output: String
    public init(input: String, output: String) { self.input = input; self.output = output }

    public func run() throws -> Result {
        let src = try ImageDirectory(path: input)
        if FileManager.default.fileExists(atPath: output),
           let names = try? FileManager.default.contentsOfDirectory(atPath: output), !names.isEmpty {
            throw ImageError.io(file: output, errno: EEXIST, what: "make-lazy into a directory that is not empty")
        }
        let dst = try ImageDirectory(path: output, create: true)
        do {
            return try copy(src, dst)
        } catch {
            try? FileManager.default.removeItem(atPath: output)
            throw error
        }
    }

    func copy(_ src: ImageDirectory, _ dst: ImageDirectory) throws -> Result {
        let tree = try src.read(.pstree, as: Img_PstreeEntry.self)
        var rewritten: Set<String> = []
        var result = Result(inBytes: 0, outBytes: 0, lazyPages: 0, keptPages: 0)
        for p in tree where src.exists(.pagemap, Int(p.pid)) {
            let pid = Int(p.pid)
            let (pagesID, _) = try src.readPagemap(pid: Int32(pid))
            let mm = try src.readOne(.mm, id: pid, as: Img_MmEntry.self)
            let cores = try p.threads.map { try src.readOne(.core, id: Int($0), as: Img_CoreEntry.self) }
            let eligible = LazyPolicy.lazyRanges(mm.vmas, cores: cores)
            let writer = try dst.pagesWriter(id: pagesID)
            var entries: [Img_PagemapEntry] = []
            var readers: [String: PagesReader] = [:]
            let chunk = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: imagePageSize)
            defer { chunk.deallocate() }
            for s in try src.resolvePages(pid: pid) {
                let whole = PageRun(start: s.vaddr, end: s.vaddr + s.nrPages * pageSize)
                for (piece, inside) in PageRuns.split([whole], by: eligible) {
                    let n = UInt32(piece.pageCount)
                    if s.fromParentProcess {
                        entries.append(Img_PagemapEntry(vaddr: piece.start, nrPages: n, flags: [.cowParent]))
                    } else if inside || s.source == nil {
                        guard inside else {
                            throw ImageError.inconsistent(file: src.filePath(.pagemap, pid), offset: 0, reason: "pages at 0x\(String(piece.start, radix: 16)) are lazy but their mapping cannot be")
                        }
                        entries.append(Img_PagemapEntry(vaddr: piece.start, nrPages: n, flags: [.lazy]))
                        result.lazyPages += Int(n)
                    } else {
                        let from = s.source!
                        let file = from.directory.filePath(.pages, Int(from.pagesID))
                        if readers[file] == nil { readers[file] = try from.directory.pagesReader(id: from.pagesID) }
                        var off = from.offset + Int(piece.start - s.vaddr)
                        var left = Int(piece.length)
                        while left > 0 {
                            let k = min(left, 1 << 20)
                            try readers[file]!.read(into: UnsafeMutableRawBufferPointer(start: chunk, count: k), at: off)
                            try writer.write(UnsafeRawBufferPointer(start: chunk, count: k))
                            off += k; left -= k
                        }
                        entries.append(Img_PagemapEntry(vaddr: piece.start, nrPages: n, flags: [.present]))
                        result.keptPages += Int(n)
                    }
                }
            }
            try writer.finish()
            try dst.writePagemap(pid: Int32(pid), pagesID: pagesID, entries: entries)
            rewritten.insert(src.filePath(.pagemap, pid))
            rewritten.insert(src.filePath(.pages, Int(pagesID)))
        }
        for f in try src.files() where f.name != "parent" && !rewritten.contains(src.path + "/" + f.name) {
            let from = src.path + "/" + f.name
            var st = stat()
            guard lstat(from, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            if f.name == "lazy-pages.socket" || f.name.hasSuffix(".log") || f.name.hasSuffix(".pid") { continue }
            do { try FileManager.default.copyItem(atPath: from, toPath: dst.path + "/" + f.name) } catch {
                throw ImageError.io(file: from, errno: EIO, what: "copy: \(error)")
            }
        }
        // Other images (shared memory) may still refer to IN's parents.
        if let parent = try src.parent() { try dst.setParent(relativePath: ImageDirectory.canonical(parent.path)) }
        result.inBytes = MakeLazy.bytes(src.path)
        result.outBytes = MakeLazy.bytes(dst.path)
        return result
    }

    /// Bytes of the regular files directly in `dir` (a parent chain is not counted).
    public static func bytes(_ dir: String) -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).reduce(0) { sum, n in
            var st = stat()
            guard lstat(dir + "/" + n, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { return sum }
            return sum + Int(st.st_size)
        }
    }
}
