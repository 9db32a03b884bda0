import Foundation
import Glibc

/// Snapshot ids of `--remote`: the images folder's name (`-D /x/pre1` and `-D pre1` are both
/// snapshot `pre1`; `--prev-images-dir ../pre1` names the same one).
public enum RemoteSnapshotID {
    public static func of(_ path: String) throws -> String {
        let id = (path as NSString).lastPathComponent
        return try RemoteFrame.checkID(ArraySlice(id.utf8), what: "snapshot id (from \(path))")
    }
}

/// Where the images of complete snapshots are read from: the cache's local socket (restore),
/// or the cache through the proxy (a dump reading its parent's pagemaps).
public protocol RemoteImageSource: AnyObject, Sendable {
    func info(_ snapshot: String) throws -> (parent: String?, images: [String])
    func read(_ snapshot: String, _ name: String) throws -> [UInt8]
    func open(_ snapshot: String, _ name: String) throws -> (fd: Int32, size: Int)
}

extension RemoteSnapshotReader: RemoteImageSource {}

/// Images moved to a memfd, for stores that only have bytes but must hand out an fd.
enum MemFile {
    static func make(_ bytes: [UInt8], name: String) throws -> (fd: Int32, size: Int) {
        let fd = try CacheStore.memfd()
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress! + off, bytes.count - off, off_t(off)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { let e = errno; close(fd); throw ImageError.io(file: name, errno: e, what: "write memfd") }
            off += n
        }
        return (fd, bytes.count)
    }
}

/// A complete snapshot in an image cache, read-only: what `restore --remote` reads, and the
/// parent chain an incremental `dump --remote` consults.
public final class RemoteSnapshotStore: ImageStore, @unchecked Sendable {
    public let snapshot: String
    public let parentID: String?
    let source: RemoteImageSource
    let images: Set<String>
    public var location: String { "remote:" + snapshot }
    private let lock = NSLock()
    /// Pages images mapped from the cache's memfds, for the restore to fill from in place.
    private var maps: [String: UnsafeRawBufferPointer] = [:]

    deinit { for m in maps.values where m.count > 0 { munmap(UnsafeMutableRawPointer(mutating: m.baseAddress), m.count) } }

    /// A pages image, read-only from the cache's sealed memfd (no copy); nil for other
    /// images or when it cannot be mapped (the restore then reads it through `open`).
    public func mapped(_ name: String) -> UnsafeRawBufferPointer? {
        guard name.hasPrefix("pages-"), images.contains(name) else { return nil }
        lock.lock(); defer { lock.unlock() }
        if let m = maps[name] { return m }
        guard let (fd, size) = try? source.open(snapshot, name) else { return nil }
        defer { close(fd) }
        var m = UnsafeRawBufferPointer(start: nil, count: 0)
        if size > 0 {
            let p = mmap(nil, size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0)
            guard p != MAP_FAILED, let p else { return nil }
            m = UnsafeRawBufferPointer(start: p, count: size)
        }
        maps[name] = m
        return m
    }

    /// Waits until `snapshot` is complete (an error if its dump failed).
    public init(snapshot: String, source: RemoteImageSource) throws {
        self.snapshot = snapshot
        self.source = source
        let (p, names) = try source.info(snapshot)
        parentID = p
        images = Set(names)
    }

    public func names() throws -> [String] { Array(images) }
    public func exists(_ name: String) -> Bool { images.contains(name) }

    public func read(_ name: String) throws -> [UInt8] {
        guard images.contains(name) else { throw ImageError.missing(file: location + "/" + name) }
        return try source.read(snapshot, name)
    }

    public func open(_ name: String) throws -> (fd: Int32, size: Int) {
        guard images.contains(name) else { throw ImageError.missing(file: location + "/" + name) }
        return try source.open(snapshot, name)
    }

    public func parent() throws -> ImageStore? {
        try parentID.map { try RemoteSnapshotStore(snapshot: $0, source: source) }
    }

    func refuse(_ what: String) -> Error { ImageError.io(file: location, errno: EROFS, what: what + " (a snapshot in the image cache is read-only)") }
    public func create(_ name: String) throws -> ImageWriter { throw refuse("create \(name)") }
    public func setParent(_ target: String?) throws { throw refuse("set parent") }
    public func commit() throws { throw refuse("commit") }
    public func discard() {}
}

/// Finds the snapshot a `--prev-images-dir` names, where a store's snapshots live elsewhere
/// than in folders (Incremental asks before it falls back to a folder).
public protocol PreviousSnapshotResolving {
    func previous(_ prevImagesDir: String) throws -> ImageStore
}

/// `dump --remote` / `pre-dump --remote`: every image goes to the image proxy as it is
/// written, frames of images written at once on several threads interleaved (each frame
/// names its image). Nothing lands on disk. Small images are kept in memory too, since a
/// dump may read back what it wrote; pages are not.
public final class RemoteDumpStore: SplicingImageStore, PreviousSnapshotResolving, @unchecked Sendable {
    public let snapshot: String
    let socketPath: String
    let writer: RemoteSnapshotWriter
    private let lock = NSLock()
    private var finishedImages: [String: [UInt8]?] = [:]
    private var poisoned: String?
    private var committed = false
    private var failed = false
    public var location: String { "remote:" + snapshot }
    /// commit() returns once the cache answered that the snapshot is stored (in its memfds).
    public var storesBeforeCommit: Bool { true }

    /// Connects to the proxy now, so a missing proxy fails before the tree is touched.
    public init(socketPath: String, snapshot: String) throws {
        self.snapshot = try RemoteFrame.checkID(ArraySlice(snapshot.utf8), what: "snapshot id")
        self.socketPath = socketPath
        // Pages are spliced into the socket, and splice has no MSG_NOSIGNAL: a proxy gone must
        // fail the dump (EPIPE), not kill it with the tree frozen.
        signal(SIGPIPE, SIG_IGN)
        writer = RemoteSnapshotWriter(fd: try UnixStream.connect(path: socketPath), socketPath: socketPath, snapshot: snapshot)
    }

    deinit { if !committed && !failed { fail(reason: "the dump writing snapshot \(snapshot) ended without finishing it") } }

    /// Bytes of images sent.
    public var bytesSent: UInt64 { writer.bytesSent }

    public func names() throws -> [String] { lock.lock(); defer { lock.unlock() }; return Array(finishedImages.keys) }
    public func exists(_ name: String) -> Bool { lock.lock(); defer { lock.unlock() }; return finishedImages[name] != nil }

    public func read(_ name: String) throws -> [UInt8] {
        lock.lock(); let kept = finishedImages[name]; lock.unlock()
        guard let kept else { throw ImageError.missing(file: location + "/" + name) }
        guard let bytes = kept else { throw ImageError.io(file: location + "/" + name, errno: ENOTSUP, what: "read back pages sent to the image proxy") }
        return bytes
    }

    public func open(_ name: String) throws -> (fd: Int32, size: Int) { try MemFile.make(try read(name), name: location + "/" + name) }

    public func create(_ name: String) throws -> ImageWriter {
        _ = try RemoteFrame.checkID(ArraySlice(name.utf8), what: "image name")
        return RemoteImageWriter(store: self, name: name, keep: !name.hasPrefix("pages-"))
    }

    func finished(_ name: String, _ kept: [UInt8]?) { lock.lock(); finishedImages[name] = .some(kept); lock.unlock() }
    func poison(_ name: String) { lock.lock(); if poisoned == nil { poisoned = name }; lock.unlock() }

    public func parent() throws -> ImageStore? {
        try writer.parentID.map { try RemoteSnapshotStore(snapshot: $0, source: writer) }
    }

    public func previous(_ prevImagesDir: String) throws -> ImageStore {
        let id = try RemoteSnapshotID.of(prevImagesDir)
        do { return try RemoteSnapshotStore(snapshot: id, source: writer) } catch {
            throw ImageError.chain(dir: location, reason: "previous snapshot \(id) in the image cache: \(error)")
        }
    }

    public func setParent(_ target: String?) throws { try writer.setParent(try target.map { try RemoteSnapshotID.of($0) }) }

    public func commit() throws {
        lock.lock(); let bad = poisoned; lock.unlock()
        if let bad { throw ImageError.io(file: location + "/" + bad, errno: EIO, what: "commit a snapshot with an abandoned image") }
        try writer.complete()
        committed = true
    }

    /// The dump failed; `fail(reason:)` tells the cache why (otherwise it is told at deinit).
    public func discard() {}

    /// Tells the cache the snapshot failed, with `reason` (it names the dump), for restores.
    public func fail(reason: String) {
        guard !committed, !failed else { return }
        failed = true
        writer.fail(reason: reason)
    }
}

final class RemoteImageWriter: SplicingImageWriter {
    let store: RemoteDumpStore
    let name: String
    var kept: [UInt8]?
    var done = false

    init(store: RemoteDumpStore, name: String, keep: Bool) { self.store = store; self.name = name; kept = keep ? [] : nil }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        try store.writer.data(name: name, bytes)
        kept?.append(contentsOf: bytes)
    }

    /// Pages go to the proxy's socket from the pipe by reference; an image kept for reading
    /// back is read out instead.
    func splice(from pipe: Int32, count: Int) throws {
        guard kept == nil else { return try PipeBytes.read(pipe, count: count) { try write($0) } }
        try store.writer.data(name: name, from: pipe, count: count)
    }

    func finish() throws {
        guard !done else { return }
        try store.writer.end(name: name)
        done = true
        store.finished(name, kept)
    }

    func abort() { if !done { done = true; store.poison(name) } }
}

/// The proxy connection of one dump: the snapshot begins with its first image (after the
/// parent is known), frames go out under one lock, and reads of earlier snapshots (get,
/// info) share it.
final class RemoteSnapshotWriter: RemoteImageSource, @unchecked Sendable {
    let conn: RemoteConnection
    let snapshot: String
    private let lock = NSLock()
    private var begun = false
    private(set) var parentID: String?
    private var sent: UInt64 = 0

    init(fd: Int32, socketPath: String, snapshot: String) {
        conn = RemoteConnection(fd: fd, peer: "image proxy \(socketPath)")
        self.snapshot = snapshot
    }

    deinit { close(conn.fd) }

    var bytesSent: UInt64 { lock.lock(); defer { lock.unlock() }; return sent }

    func setParent(_ id: String?) throws {
        lock.lock(); defer { lock.unlock() }
        guard !begun else { throw ImageError.chain(dir: "remote:" + snapshot, reason: "parent set after the first image was sent") }
        parentID = id
    }

    /// Runs `body` under the lock with the snapshot begun; a broken connection is explained
    /// by the error frame the proxy sent before closing, when there is one.
    private func locked<T>(begin: Bool = true, _ body: () throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        do {
            if begin && !begun {
                try conn.write(RemoteFrame(.begin, snapshot: snapshot, name: parentID ?? ""))
                begun = true
            }
            return try body()
        } catch let e as RemoteImageError { throw e } catch {
            var pfd = pollfd(fd: conn.fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 200) > 0, let f = try? conn.read(), f.kind == .error { throw RemoteImageError(snapshot: snapshot, reason: f.text) }
            throw error
        }
    }

    func data(name: String, _ bytes: UnsafeRawBufferPointer) throws {
        try locked {
            var off = 0
            while off < bytes.count {
                let n = min(bytes.count - off, RemoteFrame.maxChunk)
                try conn.writeData(snapshot: snapshot, name: name, UnsafeRawBufferPointer(rebasing: bytes[off..<off + n]))
                off += n
            }
            sent += UInt64(bytes.count)
        }
    }

    func data(name: String, from pipe: Int32, count: Int) throws {
        try locked {
            var left = count
            while left > 0 {
                let n = min(left, RemoteFrame.maxChunk)
                try conn.writeData(snapshot: snapshot, name: name, from: pipe, count: n)
                left -= n
            }
            sent += UInt64(count)
        }
    }

    func end(name: String) throws { try locked { try conn.write(RemoteFrame(.end, snapshot: snapshot, name: name)) } }

    func complete() throws {
        try locked {
            let r = try conn.request(RemoteFrame(.complete, snapshot: snapshot))
            guard r.kind == .ok else { throw TransportError(peer: conn.peer, "\(r.kind) frame in answer to complete") }
        }
    }

    func fail(reason: String) {
        lock.lock(); defer { lock.unlock() }
        guard begun else { return }  // the cache never heard of it
        try? conn.write(RemoteFrame(.failed, snapshot: snapshot, payload: Array(reason.utf8.prefix(RemoteFrame.maxMessage))))
    }

    func info(_ s: String) throws -> (parent: String?, images: [String]) {
        try locked(begin: false) {
            let r = try conn.request(RemoteFrame(.info, snapshot: s))
            guard r.kind == .ok else { throw TransportError(peer: conn.peer, "\(r.kind) frame in answer to info") }
            return (r.name.isEmpty ? nil : r.name, r.text.isEmpty ? [] : r.text.split(separator: "\n").map(String.init))
        }
    }

    func read(_ s: String, _ name: String) throws -> [UInt8] {
        try locked(begin: false) {
            try conn.write(RemoteFrame(.get, snapshot: s, name: name))
            var out: [UInt8] = []
            while true {
                let f = try conn.expect()
                switch f.kind {
                case .data:
                    guard out.count + f.payload.count <= ImageCodec.maxImageSize else { throw ImageError.tooLarge(file: "remote:\(s)/\(name)", size: out.count + f.payload.count, limit: ImageCodec.maxImageSize) }
                    out += f.payload
                case .end: return out
                case .error: throw RemoteImageError(snapshot: s, reason: f.text)
                default: throw TransportError(peer: conn.peer, "\(f.kind) frame in answer to get")
                }
            }
        }
    }

    func open(_ s: String, _ name: String) throws -> (fd: Int32, size: Int) { try MemFile.make(try read(s, name), name: "remote:\(s)/\(name)") }
}
