import CKernel
import Foundation
import Glibc
import Logging

public struct ImageCacheOptions: Sendable {
    public var address = "127.0.0.1"
    public var port: UInt16 = 0
    /// The unix socket restores read from.
    public var localPath: String
    /// Most image bytes held at once; past it new data is refused (the dump then fails).
    public var memoryLimit: Int
    public init(localPath: String, memoryLimit: Int = ImageCacheOptions.defaultMemoryLimit) {
        self.localPath = localPath; self.memoryLimit = memoryLimit
    }

    /// Half the machine's memory.
    public static var defaultMemoryLimit: Int {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? pages * size / 2 : 1 << 30
    }
}

/// The snapshots a cache holds, in memory: each image in a sealed memfd, so a restore gets
/// the bytes by fd with no copy and cannot change them. Snapshots are kept in the order they
/// begin; a snapshot names its parent, which must already be complete, so chains have no loops.
final class CacheStore: @unchecked Sendable {
    enum State { case open(owner: Int), complete, failed(String) }
    final class Image { var fd: Int32; var size = 0; var ended = false; init(fd: Int32) { self.fd = fd } }
    final class Snapshot {
        let id: String
        let parent: String?
        var state: State
        var images: [String: Image] = [:]
        var order: [String] = []
        init(id: String, parent: String?, owner: Int) { self.id = id; self.parent = parent; state = .open(owner: owner) }
    }

    let limit: Int
    private let cond = NSCondition()
    private var snapshots: [String: Snapshot] = [:]
    private var used = 0
    var lockedUsed: Int { cond.lock(); defer { cond.unlock() }; return used }

    init(limit: Int) { self.limit = limit }

    private func failure(_ s: String, _ r: String) -> RemoteImageError { RemoteImageError(snapshot: s, reason: r) }

    /// MFD_CLOEXEC | MFD_ALLOW_SEALING
    static func memfd() throws -> Int32 {
        Int32(try Sys.call(.memfdCreate, Int(bitPattern: UnsafeRawPointer(("cryo-image" as StaticString).utf8Start)), 1 | 2, context: "image cache"))
    }

    func begin(_ id: String, parent: String?, owner: Int) throws {
        cond.lock(); defer { cond.unlock() }
        if let old = snapshots[id] {
            switch old.state {
            case .complete: throw failure(id, "already exists (complete); snapshot ids are not reused")
            case .open: throw failure(id, "is being written by another connection")
            case .failed: drop(old)  // a retry of a failed dump starts over
            }
        }
        if let p = parent {
            guard let ps = snapshots[p] else { throw failure(id, "unknown parent snapshot \(p)") }
            guard case .complete = ps.state else { throw failure(id, "parent snapshot \(p) is not complete") }
        }
        snapshots[id] = Snapshot(id: id, parent: parent, owner: owner)
    }

    /// The snapshot `id`, open and written by `owner`.
    private func writable(_ id: String, owner: Int) throws -> Snapshot {
        guard let s = snapshots[id] else { throw failure(id, "unknown snapshot id") }
        guard case .open(let o) = s.state, o == owner else { throw failure(id, "not open for writing on this connection") }
        return s
    }

    /// `length` bytes of `image`, still on `src`, spliced into the image's memfd (one copy).
    /// The lock is not held while they arrive (only this connection writes its snapshot): the
    /// bytes count against the limit from the start, and the image grows once they are in.
    func append(_ id: String, image: String, length: Int, from src: RemoteConnection, relay: SpliceRelay, owner: Int) throws {
        cond.lock()
        let img: Image, fd: Int32, offset: Int
        do {
            let s = try writable(id, owner: owner)
            guard used + length <= limit else {
                throw failure(id, "memory limit of \(limit) bytes reached (\(used) in use): image \(image) refused; start the cache with a larger --memory-limit")
            }
            if let have = s.images[image] {
                guard !have.ended else { throw failure(id, "image \(image) was already complete") }
                img = have
            } else {
                img = Image(fd: try Self.memfd())
                s.images[image] = img
                s.order.append(image)
            }
            fd = dup(img.fd)  // its own, should the snapshot be released meanwhile
            guard fd >= 0 else { throw failure(id, "image \(image): dup: \(String(cString: strerror(errno)))") }
            offset = img.size
            used += length
        } catch { cond.unlock(); throw error }
        cond.unlock()
        defer { close(fd) }
        var moved = 0
        defer { cond.lock(); img.size += moved; used -= length - moved; cond.unlock() }
        do { moved = try relay.move(from: src.fd, to: fd, at: offset, count: length, what: "image \(image)") } catch {
            throw failure(id, "image \(image): \(error)")
        }
        guard moved == length else { throw TransportError(peer: src.peer, "connection closed inside a data frame of image \(image) (\(moved) of \(length) bytes)") }
    }

    func end(_ id: String, image: String, owner: Int) throws {
        cond.lock(); defer { cond.unlock() }
        let s = try writable(id, owner: owner)
        if let img = s.images[image] {
            guard !img.ended else { throw failure(id, "image \(image) was already complete") }
            img.ended = true
            // No one may change the bytes after this: not the cache, not a restore given the fd.
            _ = ck_fcntl_int(img.fd, 1033 /* F_ADD_SEALS */, 8 | 4 | 2 | 1 /* F_SEAL_WRITE|GROW|SHRINK|SEAL */)
        } else {
            let img = Image(fd: try Self.memfd())
            img.ended = true
            s.images[image] = img
            s.order.append(image)
        }
    }

    func complete(_ id: String, owner: Int) throws {
        cond.lock(); defer { cond.unlock() }
        let s = try writable(id, owner: owner)
        if let open = s.order.first(where: { !s.images[$0]!.ended }) { throw failure(id, "image \(open) was not finished") }
        s.state = .complete
        cond.broadcast()
    }

    func fail(_ id: String, reason: String, owner: Int) throws {
        cond.lock(); defer { cond.unlock() }
        let s = try writable(id, owner: owner)
        release(s)
        s.state = .failed(reason)
        cond.broadcast()
    }

    /// Every snapshot the connection `owner` left open fails with `reason`.
    func ownerGone(_ owner: Int, reason: String) -> [String] {
        cond.lock(); defer { cond.unlock() }
        var out: [String] = []
        for s in snapshots.values {
            if case .open(let o) = s.state, o == owner { release(s); s.state = .failed(reason); out.append(s.id) }
        }
        if !out.isEmpty { cond.broadcast() }
        return out
    }

    private func release(_ s: Snapshot) {
        for img in s.images.values { used -= img.size; close(img.fd) }
        s.images = [:]
        s.order = []
    }

    private func drop(_ s: Snapshot) { release(s); snapshots[s.id] = nil }

    /// Waits while `id` is being written, then its parent and image names.
    func info(_ id: String, timeout: Double) throws -> (parent: String?, images: [String]) {
        cond.lock(); defer { cond.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while true {
            guard let s = snapshots[id] else { throw failure(id, "unknown snapshot id") }
            switch s.state {
            case .complete: return (s.parent, s.order)
            case .failed(let why): throw failure(id, "the dump failed: \(why)")
            case .open:
                guard cond.wait(until: deadline) else { throw failure(id, "still incomplete after \(Int(timeout)) s") }
            }
        }
    }

    /// A duplicate of the sealed memfd of a complete snapshot's image, and its size.
    func image(_ id: String, _ name: String) throws -> (fd: Int32, size: Int) {
        cond.lock(); defer { cond.unlock() }
        guard let s = snapshots[id] else { throw failure(id, "unknown snapshot id") }
        guard case .complete = s.state else { throw failure(id, "not complete") }
        guard let img = s.images[name] else { throw failure(id, "has no image \(name)") }
        let fd = fcntl(img.fd, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw failure(id, "dup: \(String(cString: strerror(errno)))") }
        return (fd, img.size)
    }
}

/// `cryo image-cache`: receives snapshots from image proxies over TCP and holds them in memory
/// for restores, which read them through a local unix socket. One thread per connection; a
/// connection that breaks a rule is logged and closed, and the snapshot it was writing fails
/// (a restore waiting for it gets that error).
public final class ImageCache: @unchecked Sendable {
    public let options: ImageCacheOptions
    public let port: UInt16
    let tcpFd: Int32
    let localFd: Int32
    let store: CacheStore
    let log = Logger(label: "image-cache")
    private let lock = NSLock()
    private var connections = 0
    private var stopped = false
    /// How long a restore waits for a snapshot still being written.
    public var waitTimeout: Double = 600
    /// `cryo migrate-receive`: restores a complete snapshot on a writer's request and returns
    /// the root pid; nil (a plain cache) refuses such requests.
    /// Restores a snapshot (migrate-receive), lazily (post-copy) when the second argument says so.
    public var restoreHandler: (@Sendable (String, Bool) throws -> Int32)?
    /// Ends `serve()` once a restore succeeded (one migration per receiver).
    public var stopAfterRestore = false

    public init(_ options: ImageCacheOptions) throws {
        self.options = options
        store = CacheStore(limit: options.memoryLimit)
        (tcpFd, port) = try TCP.listen(address: options.address, port: options.port)
        do { localFd = try UnixStream.listen(path: options.localPath) } catch { close(tcpFd); throw error }
    }

    deinit { close(tcpFd); close(localFd); unlink(options.localPath) }

    public func stop() { lock.lock(); stopped = true; lock.unlock() }
    var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    /// Bytes of images held now.
    public var bytesHeld: Int { store.lockedUsed }

    /// Serves until `stop()`.
    public func serve() {
        log.info("listening on \(options.address):\(port) for proxies, \(options.localPath) for restores, memory limit \(options.memoryLimit) bytes")
        var fds = [pollfd(fd: tcpFd, events: Int16(POLLIN), revents: 0), pollfd(fd: localFd, events: Int16(POLLIN), revents: 0)]
        while !isStopped {
            if poll(&fds, 2, 200) <= 0 { continue }
            for i in 0..<2 where fds[i].revents != 0 {
                let fd = accept(fds[i].fd, nil, nil)
                if fd < 0 { continue }
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                lock.lock(); connections += 1; let n = connections; lock.unlock()
                let local = i == 1
                let t = Thread { [self] in self.connection(fd: fd, number: n, local: local) }
                t.stackSize = 1 << 20
                t.start()
            }
        }
    }

    func connection(fd: Int32, number: Int, local: Bool) {
        defer { close(fd) }
        let peer = local ? "local \(options.localPath)" : TCP.peerName(fd)
        if local && !UnixStream.peerAllowed(fd) { log.error("connection \(number): \(peer): peer is neither root nor our uid, closed"); return }
        // A silent writer must not hold its snapshot (and the restores waiting for it) forever.
        if !local { var tv = timeval(tv_sec: 300, tv_usec: 0); setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size)) }
        let c = RemoteConnection(fd: fd, peer: peer)
        log.info("connection \(number): \(peer)")
        do {
            let relay = try SpliceRelay()
            while let (f, dataLength) = try c.readLeavingData() {
                do { try handle(f, c, owner: number, local: local, data: (dataLength, relay)) } catch let e as RemoteImageError {
                    try c.write(RemoteFrame(.error, snapshot: f.snapshot, payload: Array(e.reason.utf8.prefix(RemoteFrame.maxMessage))))
                    // A refused write leaves the snapshot unusable; the connection ends, after
                    // the writer had time to read why (closing with its data unread would reset
                    // the connection and lose the error frame).
                    if [.begin, .data, .end, .complete].contains(f.kind) {
                        shutdown(fd, Int32(SHUT_WR))
                        Self.drain(fd, seconds: 5)
                        throw e
                    }
                }
            }
            let failed = store.ownerGone(number, reason: "the connection from \(peer) closed before the snapshot was complete")
            if !failed.isEmpty { log.error("connection \(number): \(peer) closed; snapshots \(failed) failed") }
        } catch {
            let failed = store.ownerGone(number, reason: "connection from \(peer) refused or broken: \(error)")
            log.error("connection \(number): \(error); closed\(failed.isEmpty ? "" : ", snapshots \(failed) failed")")
        }
    }

    /// Reads and drops what the peer still sends, until it closes or `seconds` pass.
    static func drain(_ fd: Int32, seconds: Int) {
        let end = Date(timeIntervalSinceNow: Double(seconds))
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        while Date() < end {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&pfd, 1, 100) <= 0 { continue }
            if buf.withUnsafeMutableBytes({ recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) <= 0 { return }
        }
    }

    /// `data`: a data frame's payload length, left on the socket, and the relay that takes it.
    func handle(_ f: RemoteFrame, _ c: RemoteConnection, owner: Int, local: Bool, data: (length: Int, relay: SpliceRelay)) throws {
        let writes: Set<RemoteFrameKind> = [.begin, .data, .end, .complete, .failed]
        if local && writes.contains(f.kind) { throw RemoteImageError(snapshot: f.snapshot, reason: "\(f.kind) is not accepted on the local socket") }
        switch f.kind {
        case .begin:
            try store.begin(f.snapshot, parent: f.name.isEmpty ? nil : f.name, owner: owner)
            log.info("snapshot \(f.snapshot) begins\(f.name.isEmpty ? "" : ", parent \(f.name)")")
        case .data: try store.append(f.snapshot, image: f.name, length: data.length, from: c, relay: data.relay, owner: owner)
        case .end: try store.end(f.snapshot, image: f.name, owner: owner)
        case .complete:
            try store.complete(f.snapshot, owner: owner)
            log.info("snapshot \(f.snapshot) complete (\(store.lockedUsed) bytes held)")
            try c.write(RemoteFrame(.ok, snapshot: f.snapshot))
        case .failed:
            try store.fail(f.snapshot, reason: f.text, owner: owner)
            log.error("snapshot \(f.snapshot) failed: \(f.text)")
        case .info:
            let (parent, names) = try store.info(f.snapshot, timeout: waitTimeout)
            try c.write(RemoteFrame(.ok, snapshot: f.snapshot, name: parent ?? "", payload: Array(names.joined(separator: "\n").utf8)))
        case .get:
            let (fd, size) = try store.image(f.snapshot, f.name)
            defer { close(fd) }
            var buf = [UInt8](repeating: 0, count: min(max(size, 1), RemoteFrame.maxChunk))
            var off = 0
            while off < size {
                let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, min($0.count, size - off), off_t(off)) }
                guard n > 0 else { throw TransportError(peer: c.peer, "reading image \(f.name) back: \(String(cString: strerror(errno)))") }
                try buf.withUnsafeBytes { try c.writeData(snapshot: f.snapshot, name: f.name, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                off += n
            }
            try c.write(RemoteFrame(.end, snapshot: f.snapshot, name: f.name))
        case .getFd:
            guard local else { throw RemoteImageError(snapshot: f.snapshot, reason: "getfd is only answered on the local socket") }
            let (fd, size) = try store.image(f.snapshot, f.name)
            defer { close(fd) }
            var sz = [UInt8](repeating: 0, count: 8)
            for i in 0..<8 { sz[i] = UInt8(truncatingIfNeeded: UInt64(size) >> (8 * UInt64(i))) }
            try c.write(RemoteFrame(.ok, snapshot: f.snapshot, name: f.name, payload: sz))
            var one = fd
            let r = ck_send_fds(c.fd, &one, 1)
            if r < 0 { throw SystemCallError(call: "sendmsg", errno: -r, context: "passing image \(f.name)") }
        case .restore:
            guard !local, let restoreHandler else { throw RemoteImageError(snapshot: f.snapshot, reason: "this cache does not restore (not cryo migrate-receive)") }
            guard f.name.isEmpty || f.name == RemoteFrame.lazyRestore else { throw RemoteImageError(snapshot: f.snapshot, reason: "unknown way to restore: \(f.name)") }
            _ = try store.info(f.snapshot, timeout: 0)
            let pid: Int32
            do { pid = try restoreHandler(f.snapshot, f.name == RemoteFrame.lazyRestore) } catch { throw RemoteImageError(snapshot: f.snapshot, reason: "restore failed: \(error)") }
            try c.write(RemoteFrame(.ok, snapshot: f.snapshot, payload: Array(String(pid).utf8)))
            if stopAfterRestore { stop() }
        case .ok, .error:
            throw RemoteImageError(snapshot: f.snapshot, reason: "unexpected \(f.kind) frame")
        }
    }
}

