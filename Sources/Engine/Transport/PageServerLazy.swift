import Foundation
import Glibc

/// Post-copy, dump side: answers a lazy-pages client's GETs (CRIU's PS_IOV_GET) from the images
/// of the server's directory, the parent chain resolved. The answer is an ADD_F|PE_PRESENT
/// header echoing vaddr and pid with the number of pages that follow: the run starting at
/// vaddr, at most what was asked, and 0 when the images hold no page there.
final class LazySession {
    let fd: Int32
    let peer: String
    let pages: LazyPageStore
    let server: PageServer

    init(server: PageServer, fd: Int32, peer: String) {
        self.server = server; self.fd = fd; self.peer = peer
        pages = LazyPageStore(images: server.images)
        TCP.setNoDelay(fd)
    }

    func run() throws {
        var buf = [UInt8](repeating: 0, count: Int(PageServerLimits.maxPagesPerHeader) * imagePageSize / 64)
        while true {
            guard let h = try readHeader(fd, peer: peer) else { throw TransportError(peer: peer, "connection closed before CLOSE") }
            if let p = PageServerLimits.problem(h) { throw TransportError(peer: peer, "bad header: \(p)") }
            switch h.command! {
            case .get:
                let want = min(Int(h.nrPages), buf.count / imagePageSize)
                let n = try buf.withUnsafeMutableBytes {
                    try pages.read(pid: Int(h.dstID), vaddr: h.vaddr, maxPages: want, into: $0.baseAddress!)
                }
                let reply = PageServerHeader(rawCmd: PageServerCommand.addF.rawValue | (PagemapFlags.present.rawValue << PageServerHeader.cmdBits),
                                             nrPages: UInt64(n), vaddr: h.vaddr, dstID: h.dstID)
                var out = reply.bytes
                if n > 0 { out += buf[0..<(n * imagePageSize)] }
                try TCP.writeFull(fd, out)
            case .flush, .flushAndClose:
                var status: Int32 = 0
                try TCP.writeFull(fd, &status, 4)
                return
            default:
                throw TransportError(peer: peer, "\(h.command!) sent to a lazy page server (it only answers GET)")
            }
        }
    }
}

/// The pages of a directory's images by pid and address, for GET: pagemaps resolved through the
/// parent chain; pages a child shared copy-on-write with its parent come from the parent's.
public final class LazyPageStore {
    let images: ImageDirectory
    private var segments: [Int: [PageSegment]] = [:]
    private var parents: [Int: Int]?
    private var readers: [String: PagesReader] = [:]

    public init(images: ImageDirectory) { self.images = images }

    func resolved(_ pid: Int) throws -> [PageSegment]? {
        if let s = segments[pid] { return s }
        guard images.exists(.pagemap, pid) else { return nil }
        let s = try images.resolvePages(pid: pid)
        segments[pid] = s
        return s
    }

    func parent(of pid: Int) throws -> Int? {
        if parents == nil {
            var m: [Int: Int] = [:]
            for e in try images.read(.pstree, as: Img_PstreeEntry.self) where e.ppid != 0 { m[Int(e.pid)] = Int(e.ppid) }
            parents = m
        }
        return parents![pid]
    }

    /// Copies the run of pages at `vaddr` (at most maxPages) into `buf`; returns how many.
    public func read(pid: Int, vaddr: UInt64, maxPages: Int, into buf: UnsafeMutableRawPointer, depth: Int = 0) throws -> Int {
        guard maxPages > 0, depth < 64, let segs = try resolved(pid) else { return 0 }
        var lo = 0, hi = segs.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if segs[mid].vaddr + segs[mid].nrPages * UInt64(imagePageSize) <= vaddr { lo = mid + 1 } else { hi = mid }
        }
        guard lo < segs.count, segs[lo].vaddr <= vaddr else { return 0 }
        let s = segs[lo]
        let skip = Int((vaddr - s.vaddr) / UInt64(imagePageSize))
        let n = min(maxPages, Int(s.nrPages) - skip)
        if s.fromParentProcess {
            guard let pp = try parent(of: pid) else { return 0 }
            return try read(pid: pp, vaddr: vaddr, maxPages: n, into: buf, depth: depth + 1)
        }
        guard let src = s.source else { return 0 }
        let file = src.directory.filePath(.pages, Int(src.pagesID))
        let r: PagesReader
        if let have = readers[file] { r = have } else { r = try src.directory.pagesReader(id: src.pagesID); readers[file] = r }
        try r.read(into: UnsafeMutableRawBufferPointer(start: buf, count: n * imagePageSize), at: src.offset + skip * imagePageSize)
        return n
    }
}
