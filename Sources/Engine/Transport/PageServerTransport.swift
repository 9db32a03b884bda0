import CKernel
import Foundation
import Glibc
import Logging

/// A dump's pages sent to a page server (`cryo page-server` or CRIU's), CRIU's protocol: per
/// image OPEN2, then one ADD_F per entry (the bytes of present entries right after their
/// header), and CLOSE at the end, whose answer says the server has written everything. The
/// server keeps the snapshot chain on its side, so in-parent entries carry no bytes.
public final class PageServerTransport: PageTransport {
    let fd: Int32
    let peer: String
    let log = Logger(label: "page-xfer")
    private var bytes: UInt64 = 0
    private var closed = false
    /// Headers and small runs wait here and go out together (CRIU corks its socket for the
    /// same reason): a dump of scattered pages sends thousands of them.
    private var pending: [UInt8] = []
    static let pendingLimit = 256 << 10
    /// Per ADD_F; a larger entry goes as several (the server merges them back).
    static let maxPagesPerAdd: UInt64 = 1 << 16

    public init(target: PageServerTarget) throws {
        if let s = target.socket {
            fd = s
            peer = "page server \(TCP.peerName(s)) (fd \(s))"
        } else {
            fd = try TCP.connect(address: target.address, port: target.port)
            peer = "page server \(target.address):\(target.port)"
        }
        log.info("connected to \(peer)")
    }

    deinit { if fd >= 0 { close(fd) } }

    public var pagesBytes: UInt64 { bytes }

    public func open(_ kind: ImageKind, id: Int, pagesID: UInt32) throws -> PageSink {
        let type: PageServerImageType
        switch kind {
        case .pagemap: type = .pagemap
        case .shmemPagemap: type = .shmemPagemap
        default: throw TransportError(peer: peer, "\(kind) cannot be sent to a page server")
        }
        return PageServerSink(transport: self, type: type, id: UInt64(id))
    }

    /// PS_IOV_PARENT: the server says whether its parent snapshot has this task's pagemap. It
    /// checks every in-parent range against that pagemap when it arrives, so "all" is safe.
    public func pagesInParent(pid: Int32, parent: ImageDirectory) throws -> [PageRun] {
        try send(PageServerHeader(.parent, type: .pagemap, id: UInt64(pid)))
        var has: Int32 = 0
        try receive(&has, 4, what: "PARENT")
        return has == 1 ? [PageRun(start: 0, end: PageServerLimits.userSpaceEnd)] : []
    }

    public func finish() throws {
        guard !closed else { return }
        closed = true
        try send(PageServerHeader(.flush))
        var status: Int32 = -1
        try receive(&status, 4, what: "CLOSE")
        guard status == 0 else { throw TransportError(peer: peer, "could not store the pages (status \(status))") }
        shutdown(fd, Int32(SHUT_RDWR))
        log.info("\(peer) stored \(bytes) bytes of pages")
    }

    /// Closing without CLOSE tells the server to drop everything of this dump.
    public func abort() {
        guard !closed else { return }
        closed = true
        shutdown(fd, Int32(SHUT_RDWR))
    }

    func send(_ h: PageServerHeader) throws {
        pending += h.bytes
        if pending.count >= PageServerTransport.pendingLimit { try flush() }
    }

    func flush() throws {
        guard !pending.isEmpty else { return }
        defer { pending.removeAll(keepingCapacity: true) }
        do { try TCP.writeFull(fd, pending) } catch { throw TransportError(peer: peer, "lost the connection: \(error)") }
    }

    func sendBytes(_ b: UnsafeRawBufferPointer) throws {
        guard let base = b.baseAddress, b.count > 0 else { return }
        bytes += UInt64(b.count)
        if b.count < 64 << 10 {
            pending.append(contentsOf: b)
            if pending.count >= PageServerTransport.pendingLimit { try flush() }
            return
        }
        try flush()
        do { try TCP.writeFull(fd, base, b.count) } catch { throw TransportError(peer: peer, "lost the connection: \(error)") }
    }

    /// `n` bytes from `pipe` to the socket with splice: pages the task spliced into the pipe
    /// go out by reference (the kernel's MSG_SPLICE_PAGES), not copied.
    func spliceBytes(from pipe: Int32, _ n: Int) throws {
        try flush()
        let r = Sys.spliceAll(from: pipe, to: fd, count: n, flags: 1 | 4 /* SPLICE_F_MOVE | SPLICE_F_MORE */)
        guard r.moved == n else {
            throw TransportError(peer: peer, "lost the connection: splice: \(r.errno != 0 ? String(cString: strerror(r.errno)) : "the pipe ran dry")")
        }
        bytes += UInt64(n)
    }

    func receive(_ p: UnsafeMutableRawPointer, _ n: Int, what: String) throws {
        try flush()
        let got: Int
        do { got = try TCP.readFull(fd, p, n) } catch { throw TransportError(peer: peer, "no answer to \(what): \(error)") }
        guard got == n else { throw TransportError(peer: peer, "closed the connection instead of answering \(what)") }
    }
}

final class PageServerSink: PageSink {
    let transport: PageServerTransport
    let type: PageServerImageType
    let id: UInt64
    private var opened = false
    /// The present entry whose bytes are being sent: where its next part starts, pages left.
    private var vaddr: UInt64 = 0
    private var pagesLeft: UInt64 = 0
    private var flags: UInt32 = 0
    private var partLeft = 0

    init(transport: PageServerTransport, type: PageServerImageType, id: UInt64) {
        self.transport = transport; self.type = type; self.id = id
    }

    private func openIfNeeded() throws {
        guard !opened else { return }
        opened = true
        try transport.send(PageServerHeader(.open2, type: type, id: id))
        var hasParent: UInt8 = 0
        try transport.receive(&hasParent, 1, what: "OPEN2")
    }

    private func sendPart() throws {
        let n = min(pagesLeft, PageServerTransport.maxPagesPerAdd)
        try transport.send(PageServerHeader(.addF, flags: flags, nrPages: n, vaddr: vaddr, type: type, id: id))
        vaddr += n * UInt64(imagePageSize)
        pagesLeft -= n
        partLeft = Int(n) * imagePageSize
    }

    func add(_ e: Img_PagemapEntry) throws {
        try openIfNeeded()
        guard partLeft == 0 && pagesLeft == 0 else { throw PageTransportError.stream("entry at 0x\(String(e.vaddr, radix: 16)) before the previous one's bytes") }
        vaddr = e.vaddr
        pagesLeft = UInt64(e.nrPages)
        flags = e.pageFlags.rawValue
        if e.hasData { return }  // headers go with the bytes
        while pagesLeft > 0 { try sendPart() }
        partLeft = 0
    }

    func write(_ b: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < b.count {
            if partLeft == 0 {
                guard pagesLeft > 0 else { throw PageTransportError.stream("\(b.count - off) bytes more than the entry holds") }
                try sendPart()
            }
            let k = min(partLeft, b.count - off)
            try transport.sendBytes(UnsafeRawBufferPointer(rebasing: b[off..<(off + k)]))
            off += k
            partLeft -= k
        }
        try Fault.check(.midTransfer)
    }

    func splice(from pipe: Int32, count: Int) throws {
        var off = 0
        while off < count {
            if partLeft == 0 {
                guard pagesLeft > 0 else { throw PageTransportError.stream("\(count - off) bytes more than the entry holds") }
                try sendPart()
            }
            let k = min(partLeft, count - off)
            try transport.spliceBytes(from: pipe, k)
            off += k
            partLeft -= k
        }
        try Fault.check(.midTransfer)
    }

    func finish() throws {
        try openIfNeeded()
        guard partLeft == 0 && pagesLeft == 0 else { throw PageTransportError.stream("image \(id) finished with bytes missing") }
    }

    func abort() {}
}
