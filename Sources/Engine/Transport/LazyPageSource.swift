import Foundation
import Glibc

/// Where the lazy-pages daemon gets the bytes of missing pages: the dumped images on this
/// machine, or the dump side's page server. One protocol, one type per place.
public protocol LazyPageSource: AnyObject {
    /// For messages: "images DIR" or "page server ADDR:PORT".
    var name: String { get }
    /// Pages fetched at once for a fault (the faulting page first, then the ones after it).
    var faultPages: Int { get }
    /// Pages fetched at once while filling in the background.
    var backgroundPages: Int { get }
    /// A read costs no round trip: a fault's own page is read and placed before its prefetch.
    var readsCheaply: Bool { get }
    /// `pages` pages of `pid`'s memory at `vaddr` as dumped, into `buf`.
    func read(pid: Int32, vaddr: UInt64, pages: Int, into buf: UnsafeMutableRawPointer) throws
    func close()
}

/// The images directory (with its parent chain), read with pread.
public final class LocalImagesPageSource: LazyPageSource {
    let images: ImageDirectory
    private var segments: [Int32: [PageSegment]] = [:]
    private var files: [String: PagesReader] = [:]
    public var name: String { "images \(images.path)" }
    public let faultPages = 16
    public let backgroundPages = 256
    public let readsCheaply = true

    public init(imagesDir: String) throws { images = try ImageDirectory(path: imagesDir) }
    public init(images: ImageDirectory) { self.images = images }

    /// Resolves every task's pages and opens every pages image now, so that reads need the
    /// store no more (an image cache hands out memfds, and may stop after the restore).
    public func openAll() throws {
        for e in try images.read(.pstree, as: Img_PstreeEntry.self) where images.exists(.pagemap, Int(e.pid)) {
            let pid = Int32(e.pid)
            let segs = try images.resolvePages(pid: Int(pid))
            segments[pid] = segs
            for s in segs { if let src = s.source { try reader(src) } }
        }
    }

    @discardableResult
    func reader(_ src: PageSegment.Source) throws -> PagesReader {
        let file = src.directory.filePath(.pages, Int(src.pagesID))
        if let r = files[file] { return r }
        let r = try src.directory.pagesReader(id: src.pagesID)
        files[file] = r
        return r
    }

    public func read(pid: Int32, vaddr: UInt64, pages: Int, into buf: UnsafeMutableRawPointer) throws {
        if segments[pid] == nil { segments[pid] = try images.resolvePages(pid: Int(pid)) }
        let segs = segments[pid]!
        let end = vaddr + UInt64(pages * imagePageSize)
        var cursor = vaddr
        // Segments are in address order: the first one ending after `cursor`.
        var lo = 0, hi = segs.count
        while lo < hi { let m = (lo + hi) / 2; if segs[m].vaddr + segs[m].nrPages * pageSize <= cursor { lo = m + 1 } else { hi = m } }
        var i = lo
        while cursor < end {
            guard i < segs.count, segs[i].vaddr <= cursor else {
                throw LazyPagesError.source("pid \(pid): page 0x\(String(cursor, radix: 16)) is not in \(images.path)")
            }
            let s = segs[i]
            let segEnd = s.vaddr + s.nrPages * pageSize
            guard let src = s.source else {
                throw LazyPagesError.source("pid \(pid): pages at 0x\(String(cursor, radix: 16)) are not in \(images.path) (lazy in the images: serve them with `cryo lazy-pages --page-server`)")
            }
            let n = Int(min(end, segEnd) - cursor)
            try reader(src).read(into: UnsafeMutableRawBufferPointer(start: buf + Int(cursor - vaddr), count: n), at: src.offset + Int(cursor - s.vaddr))
            cursor += UInt64(n)
            i += 1
        }
    }

    public func close() { files.values.forEach { $0.close() }; files = [:] }
}

/// The dump side's `cryo page-server --lazy-pages` (or CRIU's), asked with PS_IOV_GET.
public final class RemotePageServerSource: LazyPageSource {
    let fd: Int32
    public let name: String
    public let faultPages = 32
    public let readsCheaply = false
    /// The server answers at most 4096 pages per GET.
    public let backgroundPages = 256

    public init(address: String, port: UInt16) throws {
        name = "page server \(address):\(port)"
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(address, String(port), &hints, &res)
        guard rc == 0, let ai = res else { throw LazyPagesError.source("\(address): \(String(cString: gai_strerror(rc)))") }
        defer { freeaddrinfo(res) }
        let s = socket(ai.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw LazyPagesError.source("socket: \(String(cString: strerror(errno)))") }
        guard Glibc.connect(s, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0 else {
            let e = errno; Glibc.close(s)
            throw LazyPagesError.source("cannot reach the page server \(address):\(port): \(String(cString: strerror(e)))")
        }
        var one: Int32 = 1
        setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        fd = s
    }

    func sendAll(_ b: [UInt8]) throws {
        var done = 0
        while done < b.count {
            let n = b.withUnsafeBytes { send(fd, $0.baseAddress! + done, b.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw lost("send") }
            done += n
        }
    }

    /// A peer that closes with our request unread resets instead of closing:
    /// both are the same loss to the user, so both say so in the same words.
    func lost(_ op: String) -> LazyPagesError {
        let e = errno
        if e == ECONNRESET || e == EPIPE { return .source("\(name) closed the connection (\(op): \(String(cString: strerror(e))))") }
        return .source("\(name): \(op): \(String(cString: strerror(e)))")
    }

    func recvAll(_ p: UnsafeMutableRawPointer, _ count: Int) throws {
        var done = 0
        while done < count {
            let n = recv(fd, p + done, count - done, 0)
            if n < 0 && errno == EINTR { continue }
            if n == 0 { throw LazyPagesError.source("\(name) closed the connection") }
            guard n > 0 else { throw lost("recv") }
            done += n
        }
    }

    public func read(pid: Int32, vaddr: UInt64, pages: Int, into buf: UnsafeMutableRawPointer) throws {
        var got = 0
        while got < pages {
            let at = vaddr + UInt64(got * imagePageSize)
            let want = pages - got
            try sendAll(PageServerHeader.get(pid: UInt64(pid), vaddr: at, nrPages: UInt64(want)).bytes)
            var raw = [UInt8](repeating: 0, count: PageServerHeader.size)
            try raw.withUnsafeMutableBytes { try recvAll($0.baseAddress!, PageServerHeader.size) }
            guard let h = PageServerHeader(bytes: raw) else { throw LazyPagesError.source("\(name): short answer") }
            // The answer must be for what was asked, or the bytes would land in the wrong place.
            guard h.command == .addF || h.command == .add, h.vaddr == at, h.dstID == UInt64(pid), h.nrPages <= UInt64(want) else {
                throw LazyPagesError.source("\(name) answered GET pid \(pid) 0x\(String(at, radix: 16)) x\(want) with cmd 0x\(String(h.rawCmd, radix: 16)) 0x\(String(h.vaddr, radix: 16)) x\(h.nrPages) dst_id \(h.dstID)")
            }
            guard h.nrPages > 0 else {
                throw LazyPagesError.source("\(name) has no pages of pid \(pid) at 0x\(String(at, radix: 16))")
            }
            try recvAll(buf + got * imagePageSize, Int(h.nrPages) * imagePageSize)
            got += Int(h.nrPages)
        }
    }

    /// CLOSE, so the server knows the restore is complete (it answers a status), then the socket.
    public func close() {
        if (try? sendAll(PageServerHeader(.flushAndClose).bytes)) != nil {
            var status: Int32 = -1
            try? withUnsafeMutableBytes(of: &status) { try recvAll($0.baseAddress!, 4) }
        }
        Glibc.close(fd)
    }
}
