import CKernel
import Foundation
import Glibc
import Logging

public struct PageServerOptions: Sendable {
    public var imagesDir: String
    public var address = "127.0.0.1"
    public var port: UInt16 = 0
    /// Post-copy: serve pages of the images in imagesDir on request (GET) instead of receiving.
    public var lazy = false
    /// The previous snapshot on this side, relative to imagesDir: in-parent pages resolve there.
    public var prevImagesDir: String?
    public init(imagesDir: String) { self.imagesDir = imagesDir }
}

/// `cryo page-server`: receives pagemaps and pages (CRIU's page-server protocol) and writes
/// pagemap-ID.img and pages-N.img into one directory, as a local dump would; or, with `lazy`,
/// serves the pages of that directory on request. Each connection is served on its own thread,
/// so a stuck or hostile client holds up no one. Nothing a client sends becomes a path: files
/// are named from numbers the server checked. A session's files appear under their real names
/// only when the client flushes; a session that breaks leaves nothing.
/// Receiving, the server ends after the first session that completes (as CRIU's does); a
/// failed session is logged and the server listens on.
public final class PageServer: @unchecked Sendable {
    public let options: PageServerOptions
    public let images: ImageDirectory
    public let port: UInt16
    let listenFd: Int32
    let log = Logger(label: "page-server")
    private let lock = NSLock()
    /// CRIU's server numbers its pages files from 0x10001, clear of a local dump's.
    private var nextPagesID: UInt32 = 0x10001
    private var sessions = 0
    private var finished = false
    private var exitStatus: Int32 = 0

    public init(_ options: PageServerOptions) throws {
        self.options = options
        images = try ImageDirectory(path: options.imagesDir, create: !options.lazy)
        if let prev = options.prevImagesDir {
            let target = prev.hasPrefix("/") ? prev : images.path + "/" + prev
            guard (try? ImageDirectory(path: target)) != nil else {
                throw ImageError.chain(dir: images.path, reason: "previous images \(target) are not a directory")
            }
            try images.setParent(relativePath: prev)
        }
        (listenFd, port) = try TCP.listen(address: options.address, port: options.port)
    }

    deinit { close(listenFd) }

    /// Serves until a session completes; returns its status (0: images written).
    public func serve() -> Int32 {
        log.info("listening on \(options.address):\(port), \(options.lazy ? "serving" : "receiving into") \(images.path)")
        while !isFinished {
            var pfd = pollfd(fd: listenFd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, 200)
            if r <= 0 { continue }
            let fd = accept(listenFd, nil, nil)
            if fd < 0 { continue }
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            lock.lock(); sessions += 1; let n = sessions; lock.unlock()
            let t = Thread { [self] in self.session(fd: fd, number: n) }
            t.stackSize = 1 << 20
            t.start()
        }
        return exitStatus
    }

    var isFinished: Bool { lock.lock(); defer { lock.unlock() }; return finished }

    func finish(status: Int32) {
        lock.lock(); if !finished { finished = true; exitStatus = status }; lock.unlock()
    }

    /// A number for a new pages file that no file in the directory has.
    func allocatePagesID() -> UInt32 {
        lock.lock(); defer { lock.unlock() }
        while images.exists(.pages, Int(nextPagesID)) { nextPagesID += 1 }
        defer { nextPagesID += 1 }
        return nextPagesID
    }

    func session(fd: Int32, number: Int) {
        let peer = TCP.peerName(fd)
        defer { close(fd) }
        log.info("session \(number): \(peer) connected")
        do {
            if options.lazy {
                try LazySession(server: self, fd: fd, peer: peer).run()
            } else {
                let s = ReceiveSession(server: self, fd: fd, peer: peer, number: number)
                do { try s.run() } catch { s.discard(); throw error }
            }
            log.info("session \(number): \(peer) done")
            finish(status: 0)
        } catch {
            log.error("session \(number): \(error); connection closed, nothing of it kept")
        }
    }

    /// The parent snapshot's pagemap for an image, or nil without one.
    func parentPageMap(type: PageServerImageType, id: Int) throws -> PageMap? {
        guard let parent = try images.parent() else { return nil }
        let kind: ImageKind = type == .pagemap ? .pagemap : .shmemPagemap
        guard parent.exists(kind, id) else { return nil }
        return try parent.pageMap(pid: id, kind: kind)
    }
}

/// Reads one header; nil when the peer closed cleanly between messages. `legacy` is decided
/// from the first header of a session (nil until then): CRIU before 4.2 sends 24 bytes.
func readHeader(_ fd: Int32, peer: String, legacy: inout Bool?) throws -> PageServerHeader? {
    var b = [UInt8](repeating: 0, count: legacy == true ? PageServerHeader.legacySize : PageServerHeader.size)
    let first = legacy == nil ? PageServerHeader.legacySize : b.count
    var got = try b.withUnsafeMutableBytes { try TCP.readFull(fd, $0.baseAddress!, first) }
    if got == 0 { return nil }
    if legacy == nil && got == first {
        legacy = PageServerHeader.isLegacy(firstBytes: Array(b[0..<first]))
        if legacy == true { b.removeLast(b.count - first) } else {
            got += try b.withUnsafeMutableBytes { try TCP.readFull(fd, $0.baseAddress! + first, $0.count - first) }
        }
    }
    guard got == b.count else { throw TransportError(peer: peer, "connection closed inside a header (\(got) of \(b.count) bytes)") }
    return legacy == true ? PageServerHeader(legacyBytes: b)! : PageServerHeader(bytes: b)!
}

/// One dump's connection: images are written to temporary files and renamed on CLOSE.
final class ReceiveSession {
    let server: PageServer
    let fd: Int32
    let peer: String
    let number: Int
    var images: ImageDirectory { server.images }

    struct Image {
        let type: PageServerImageType
        let id: Int
        let pagesID: UInt32
        let pagesFd: Int32
        let pagesTmp: String
        var pagesBytes = 0
        var entries: [Img_PagemapEntry] = []
        var lastEnd: UInt64 = 0
        var parent: PageMap?
        var kind: ImageKind { type == .pagemap ? .pagemap : .shmemPagemap }
    }
    var current: Image?
    var finished: [Image] = []
    /// The client speaks CRIU's pre-4.2 24-byte header.
    var legacy: Bool?
    var seen: Set<UInt64> = []
    static let bufferSize = 4 << 20
    static let idleSeconds = 300
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: bufferSize, alignment: 4096)
    /// nil when no pipe could be made: the pages then go through `buffer`.
    var splicePipe: (r: Int32, w: Int32, size: Int)?

    init(server: PageServer, fd: Int32, peer: String, number: Int) {
        self.server = server; self.fd = fd; self.peer = peer; self.number = number
        TCP.setNoDelay(fd)
        // A client silent this long is gone or hostile; its thread and files go.
        var tv = timeval(tv_sec: ReceiveSession.idleSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var p: [Int32] = [-1, -1]
        if (try? p.withUnsafeMutableBufferPointer { try Sys.call(.pipe2, Int(bitPattern: $0.baseAddress!), Int(O_CLOEXEC)) }) != nil {
            splicePipe = (p[0], p[1], PipeSize.grow(p[1]))
        }
    }
    deinit {
        buffer.deallocate()
        if let p = splicePipe { close(p.r); close(p.w) }
    }

    func fail(_ why: String) -> TransportError { TransportError(peer: peer, why) }

    func run() throws {
        while true {
            guard let h = try readHeader(fd, peer: peer, legacy: &legacy) else { throw fail("connection closed before CLOSE: the images are incomplete") }
            if let p = PageServerLimits.problem(h) { throw fail("bad header: \(p)") }
            switch h.command! {
            case .open, .open2:
                let img = try open(h)
                if h.command == .open2 {
                    var answer: UInt8 = img.parent != nil ? 1 : 0
                    try TCP.writeFull(fd, &answer, 1)
                }
            case .parent:
                var has: Int32 = try server.parentPageMap(type: h.imageType!, id: Int(h.imageID)) != nil ? 1 : 0
                try TCP.writeFull(fd, &has, 4)
            case .add: try add(h, flags: [.present])
            case .hole: try add(h, flags: [.parent])
            case .addF: try add(h, flags: PagemapFlags(rawValue: h.flags))
            case .flush, .flushAndClose:
                var status: Int32 = 0
                do { try commit() } catch {
                    status = -1
                    try? TCP.writeFull(fd, &status, 4)
                    throw error
                }
                try TCP.writeFull(fd, &status, 4)
                // As CRIU's: wait for the client to close, so it holds the TIME_WAIT.
                var c: UInt8 = 0
                var tv = timeval(tv_sec: 10, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                if recv(fd, &c, 1, 0) > 0 { server.log.warning("\(peer): data after CLOSE ignored") }
                return
            case .get:
                throw fail("GET sent to a receiving page server (start it with --lazy-pages to serve pages)")
            }
        }
    }

    func open(_ h: PageServerHeader) throws -> Image {
        try closeCurrent()
        guard !seen.contains(h.dstID) else { throw fail("image \(h.imageType!) \(h.imageID) opened twice") }
        seen.insert(h.dstID)
        let type = h.imageType!, id = Int(h.imageID)
        let pagesID = server.allocatePagesID()
        let tmp = images.filePath(.pages, Int(pagesID)) + ".\(number).tmp"
        let pfd = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard pfd >= 0 else { throw ImageError.io(file: tmp, errno: errno, what: "create") }
        var img = Image(type: type, id: id, pagesID: pagesID, pagesFd: pfd, pagesTmp: tmp)
        do { img.parent = try server.parentPageMap(type: type, id: id) } catch { close(pfd); unlink(tmp); throw error }
        current = img
        server.log.debug("\(peer): open \(type) \(id) -> pages-\(pagesID).img")
        return img
    }

    func closeCurrent() throws {
        guard let c = current else { return }
        current = nil
        let r = close(c.pagesFd)
        guard r == 0 else { let e = errno; unlink(c.pagesTmp); throw ImageError.io(file: c.pagesTmp, errno: e, what: "close") }
        finished.append(c)
    }

    func add(_ h: PageServerHeader, flags: PagemapFlags) throws {
        if current?.type != h.imageType || current?.id != Int(h.imageID) {
            // CRIU's server opens implicitly ("IO w/o open") for old clients.
            _ = try open(h)
        }
        let end = h.vaddr + h.nrPages * UInt64(imagePageSize)
        guard h.vaddr >= current!.lastEnd else {
            throw fail("pages at 0x\(String(h.vaddr, radix: 16)) of \(h.imageType!) \(h.imageID) overlap or come before earlier ones (up to 0x\(String(current!.lastEnd, radix: 16)))")
        }
        if flags.contains(.parent) {
            guard let parent = current!.parent else {
                throw fail("pages 0x\(String(h.vaddr, radix: 16))-0x\(String(end, radix: 16)) of \(h.imageType!) \(h.imageID) are sent as in the parent, but this server has no parent snapshot of it")
            }
            var cursor = h.vaddr
            for e in parent.entries(overlapping: h.vaddr, end) {
                guard e.vaddr <= cursor else { break }
                cursor = min(end, e.end)
            }
            guard cursor >= end else {
                throw fail("pages 0x\(String(cursor, radix: 16))-0x\(String(end, radix: 16)) of \(h.imageType!) \(h.imageID) are sent as in the parent, but \(parent.file) does not have them")
            }
        }
        if flags.contains(.present) {
            var left = Int(h.nrPages) * imagePageSize
            // Socket -> pipe -> file: the bytes reach the page cache with one copy, not two.
            if let pipe = splicePipe {
                while left > 0 {
                    let moved = ck_syscall6(SyscallNumber.splice.rawValue, Int(fd), 0, Int(pipe.w), 0, min(left, pipe.size), 1 /* SPLICE_F_MOVE */)
                    if moved < 0 && ck_errno() == EINTR { continue }
                    guard moved > 0 else {
                        if moved == 0 { throw fail("connection closed inside the pages at 0x\(String(h.vaddr, radix: 16))") }
                        throw SystemCallError(call: "splice", errno: ck_errno(), context: peer)
                    }
                    let w = Sys.spliceAll(from: pipe.r, to: current!.pagesFd, at: current!.pagesBytes, count: moved, flags: 1 /* SPLICE_F_MOVE */)
                    current!.pagesBytes += w.moved
                    left -= w.moved
                    guard w.moved == moved else { throw ImageError.ioAt(file: current!.pagesTmp, offset: current!.pagesBytes, errno: w.errno != 0 ? w.errno : ENOSPC, what: "splice") }
                }
            }
            while left > 0 {
                let n = min(left, ReceiveSession.bufferSize)
                let got = try TCP.readFull(fd, buffer, n)
                guard got == n else { throw fail("connection closed inside the pages at 0x\(String(h.vaddr, radix: 16))") }
                var done = 0
                while done < n {
                    let w = pwrite(current!.pagesFd, buffer + done, n - done, off_t(current!.pagesBytes + done))
                    if w < 0 && errno == EINTR { continue }
                    guard w > 0 else { throw ImageError.ioAt(file: current!.pagesTmp, offset: current!.pagesBytes + done, errno: w < 0 ? errno : ENOSPC, what: "write") }
                    done += w
                }
                current!.pagesBytes += n
                left -= n
            }
        }
        // In place: a copy of `current` would copy its entries on every header.
        if let last = current!.entries.last, last.pageFlags == flags, last.vaddr + UInt64(last.nrPages) * UInt64(imagePageSize) == h.vaddr,
           UInt64(last.nrPages) + h.nrPages <= UInt64(UInt32.max) {
            current!.entries[current!.entries.count - 1].nrPages += UInt32(h.nrPages)
        } else {
            current!.entries.append(Img_PagemapEntry(vaddr: h.vaddr, nrPages: UInt32(h.nrPages), flags: flags))
        }
        current!.lastEnd = end
    }

    /// Every image of the session under its real name: pages files first, then the pagemaps
    /// that name them (each written to a temporary file and renamed).
    func commit() throws {
        try closeCurrent()
        for img in finished {
            let file = images.filePath(.pages, Int(img.pagesID))
            guard rename(img.pagesTmp, file) == 0 else { throw ImageError.io(file: file, errno: errno, what: "rename") }
        }
        for img in finished {
            try images.writePagemap(id: img.id, pagesID: img.pagesID, entries: img.entries, kind: img.kind)
        }
        server.log.info("\(peer): \(finished.count) image(s), \(finished.reduce(0) { $0 + $1.pagesBytes }) bytes of pages written")
        finished = []
    }

    /// The session broke: its files go.
    func discard() {
        if let c = current { close(c.pagesFd); unlink(c.pagesTmp); current = nil }
        for img in finished {
            unlink(img.pagesTmp)
            unlink(images.filePath(.pages, Int(img.pagesID)))
        }
        finished = []
    }
}
