import Foundation
import Glibc

/// Where a dump or pre-dump sends each image's pagemap and pages: the one seam between dump
/// logic and a transfer mode. A dump opens one sink per image (a task's pagemap, a shared
/// memory object's) in the order it writes them, feeds it entries in ascending order with
/// the bytes of each present entry right after it, and finishes it. Sinks of one transport are
/// used one at a time, in the order they were opened; opening one does no I/O.
public protocol PageTransport: AnyObject {
    /// A sink for one image. `pagesID` is the pages file a local dump would name; a transport
    /// that numbers its own files ignores it.
    func open(_ kind: ImageKind, id: Int, pagesID: UInt32) throws -> PageSink
    /// Pages of task `pid` that the previous snapshot holds (where in-parent entries may point).
    /// `parent` is the previous snapshot's local directory.
    func pagesInParent(pid: Int32, parent: ImageDirectory) throws -> [PageRun]
    /// Everything sent is safely stored; the dump may now call itself finished.
    func finish() throws
    /// The dump failed: nothing it sent may look like a finished image.
    func abort()
    /// Bytes of pages written so far.
    var pagesBytes: UInt64 { get }
}

public protocol PageSink: AnyObject {
    /// The next pagemap entry; when it holds data (PE_PRESENT), exactly its bytes follow in
    /// `write` calls before the next entry or `finish`.
    func add(_ entry: Img_PagemapEntry) throws
    func write(_ bytes: UnsafeRawBufferPointer) throws
    /// The same as `write` for `count` bytes waiting in `pipe`: pages the task spliced there
    /// go on by reference where the destination takes them (a socket, a stream), else are copied once.
    func splice(from pipe: Int32, count: Int) throws
    /// The image is complete (a local sink writes its pagemap now).
    func finish() throws
    func abort()
}

/// Where a dump sends its pages to a page server (`--page-server --address --port`).
public struct PageServerTarget: Sendable {
    public var address: String
    public var port: UInt16
    /// A socket already connected to the server (CRIU's --ps-socket); used instead of connecting.
    public var socket: Int32?
    public init(address: String, port: UInt16) { self.address = address; self.port = port }
}

public enum PageTransports {
    /// The transport for a dump into `images`: the directory itself, or a page server.
    public static func make(images: ImageDirectory, pageServer: PageServerTarget?) throws -> PageTransport {
        if let t = pageServer { return try PageServerTransport(target: t) }
        return LocalPageTransport(images: images)
    }
}

/// Turns a pagemap known in advance and the stream of its pages' bytes (as PageCopier reads
/// them, in buffers that ignore entry boundaries) into the sink's entry-then-bytes order.
public final class PageStream: @unchecked Sendable {
    let sink: PageSink
    let entries: [Img_PagemapEntry]
    private var next = 0
    private var left: UInt64 = 0

    public init(sink: PageSink, entries: [Img_PagemapEntry]) { self.sink = sink; self.entries = entries }

    public func write(_ p: UnsafeRawPointer, _ n: Int) throws {
        try feed(n) { off, k in try sink.write(UnsafeRawBufferPointer(start: p + off, count: k)) }
    }

    /// The next `n` bytes wait in `pipe`.
    public func splice(from pipe: Int32, _ n: Int) throws {
        try feed(n) { _, k in try sink.splice(from: pipe, count: k) }
    }

    /// Walks `n` bytes through the entries: the sink gets each entry, then its bytes as
    /// `part(offset into the n, length)`.
    private func feed(_ n: Int, _ part: (Int, Int) throws -> Void) throws {
        var off = 0
        while off < n {
            if left == 0 {
                while next < entries.count && !entries[next].hasData { try sink.add(entries[next]); next += 1 }
                guard next < entries.count else { throw PageTransportError.stream("\(n - off) bytes more than the pagemap holds") }
                try sink.add(entries[next])
                left = UInt64(entries[next].nrPages) * UInt64(imagePageSize)
                next += 1
            }
            let k = Int(min(UInt64(n - off), left))
            try part(off, k)
            off += k
            left -= UInt64(k)
        }
        try Fault.check(.midPages)
    }

    public func finish() throws {
        guard left == 0 else { throw PageTransportError.stream("\(left) bytes of pages missing") }
        while next < entries.count {
            guard !entries[next].hasData else { throw PageTransportError.stream("no bytes for the entry at 0x\(String(entries[next].vaddr, radix: 16))") }
            try sink.add(entries[next]); next += 1
        }
        try sink.finish()
    }

    public func abort() { sink.abort() }
}

public enum PageTransportError: Error, CustomStringConvertible {
    case stream(String)
    public var description: String {
        switch self { case .stream(let s): return "pages stream: \(s)" }
    }
}

/// Today's images directory: pagemap-ID.img and pages-N.img beside the other images, the
/// pages written with pwrite straight from the caller's buffers.
public final class LocalPageTransport: PageTransport {
    public let images: ImageDirectory
    private let lock = NSLock()
    private var bytes: UInt64 = 0
    public init(images: ImageDirectory) { self.images = images }

    public func open(_ kind: ImageKind, id: Int, pagesID: UInt32) throws -> PageSink {
        LocalPageSink(transport: self, kind: kind, id: id, pagesID: pagesID)
    }

    public func pagesInParent(pid: Int32, parent: ImageDirectory) throws -> [PageRun] {
        guard parent.exists(.pagemap, Int(pid)) else { return [] }
        return PageRuns.normalize(try parent.resolvePages(pid: Int(pid)).filter { $0.source != nil }.map {
            PageRun(start: $0.vaddr, end: $0.vaddr + $0.nrPages * UInt64(imagePageSize))
        })
    }

    public func finish() throws {}
    public func abort() {}
    public var pagesBytes: UInt64 { lock.lock(); defer { lock.unlock() }; return bytes }
    func count(_ n: Int) { lock.lock(); bytes += UInt64(n); lock.unlock() }
}

final class LocalPageSink: PageSink {
    let transport: LocalPageTransport
    let kind: ImageKind
    let id: Int
    let pagesID: UInt32
    private var writer: ImageWriter?
    private var entries: [Img_PagemapEntry] = []

    init(transport: LocalPageTransport, kind: ImageKind, id: Int, pagesID: UInt32) {
        self.transport = transport; self.kind = kind; self.id = id; self.pagesID = pagesID
    }

    func add(_ e: Img_PagemapEntry) throws {
        if let last = entries.last, last.pageFlags == e.pageFlags, last.vaddr + UInt64(last.nrPages) * UInt64(imagePageSize) == e.vaddr,
           UInt64(last.nrPages) + UInt64(e.nrPages) <= UInt64(UInt32.max) {
            entries[entries.count - 1].nrPages += e.nrPages
        } else {
            entries.append(e)
        }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if writer == nil { writer = try transport.images.pagesWriter(id: pagesID) }
        try writer!.write(bytes)
        transport.count(bytes.count)
    }

    /// Spliced on when the store's writer takes pipes (a stream, the image proxy), else copied.
    func splice(from pipe: Int32, count: Int) throws {
        if writer == nil { writer = try transport.images.pagesWriter(id: pagesID) }
        if let w = writer as? SplicingImageWriter { try w.splice(from: pipe, count: count) } else {
            try PipeBytes.read(pipe, count: count) { try writer!.write($0) }
        }
        transport.count(count)
    }

    func finish() throws {
        if writer == nil { writer = try transport.images.pagesWriter(id: pagesID) }
        try writer!.finish()
        try transport.images.writePagemap(id: id, pagesID: pagesID, entries: entries, kind: kind)
    }

    func abort() { writer?.abort() }
}
