import CKernel
import Glibc

/// A dump's connection to the image proxy: one snapshot written image by image, data frames
/// sent as the images are written. Any failure of the connection is thrown to the dump, which
/// then fails (and resumes the tree).
public final class RemoteSnapshotWriter: @unchecked Sendable {
    public let snapshot: String
    public let parent: String?
    let conn: RemoteConnection
    private var finished = false
    public private(set) var bytesSent: UInt64 = 0

    /// Connects to the proxy at `socketPath` and begins `snapshot` (after `parent`).
    public init(socketPath: String, snapshot: String, parent: String?) throws {
        _ = try RemoteFrame.checkID(ArraySlice(snapshot.utf8), what: "snapshot id")
        if let parent { _ = try RemoteFrame.checkID(ArraySlice(parent.utf8), what: "parent snapshot id") }
        self.snapshot = snapshot
        self.parent = parent
        let fd = try UnixStream.connect(path: socketPath)
        conn = RemoteConnection(fd: fd, peer: "image proxy \(socketPath)")
        do { try conn.write(RemoteFrame(.begin, snapshot: snapshot, name: parent ?? "")) } catch { close(fd); throw error }
    }

    deinit { close(conn.fd) }

    /// An error the proxy sent before closing, if any, else `error`.
    private func explain(_ error: Error) -> Error {
        var pfd = pollfd(fd: conn.fd, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, 100) > 0, let f = try? conn.read(), f.kind == .error { return RemoteImageError(snapshot: snapshot, reason: f.text) }
        return error
    }

    public func write(name: String, _ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        do {
            while off < bytes.count {
                let n = min(bytes.count - off, RemoteFrame.maxChunk)
                try conn.writeData(snapshot: snapshot, name: name, UnsafeRawBufferPointer(rebasing: bytes[off..<off + n]))
                off += n
                bytesSent += UInt64(n)
            }
        } catch { throw explain(error) }
    }

    public func end(name: String) throws {
        do { try conn.write(RemoteFrame(.end, snapshot: snapshot, name: name)) } catch { throw explain(error) }
    }

    /// A whole image.
    public func put(name: String, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write(name: name, $0) }
        try end(name: name)
    }

    /// Image `name` of an earlier, complete snapshot (a parent's pagemap), nil if it has none.
    public func get(snapshot s: String, name: String) throws -> [UInt8]? {
        do {
            try conn.write(RemoteFrame(.get, snapshot: s, name: name))
            var out: [UInt8] = []
            while true {
                let f = try conn.expect()
                switch f.kind {
                case .data: out += f.payload
                case .end: return out
                case .error:
                    if f.text.hasSuffix("has no image \(name)") { return nil }
                    throw RemoteImageError(snapshot: s, reason: f.text)
                default: throw TransportError(peer: conn.peer, "\(f.kind) frame in answer to get")
                }
            }
        } catch { throw explain(error) }
    }

    /// Waits until the cache has stored the whole snapshot.
    public func complete() throws {
        do {
            let r = try conn.request(RemoteFrame(.complete, snapshot: snapshot))
            guard r.kind == .ok else { throw TransportError(peer: conn.peer, "\(r.kind) frame in answer to complete") }
            finished = true
        } catch { throw explain(error) }
    }

    /// The dump failed: the cache drops what it got and tells restores `reason`.
    public func fail(reason: String) {
        guard !finished else { return }
        finished = true
        try? conn.write(RemoteFrame(.failed, snapshot: snapshot, payload: Array(reason.utf8.prefix(RemoteFrame.maxMessage))))
    }
}

/// A restore's connection to the image cache's local socket.
public final class RemoteSnapshotReader: @unchecked Sendable {
    let conn: RemoteConnection

    public init(socketPath: String) throws {
        conn = RemoteConnection(fd: try UnixStream.connect(path: socketPath), peer: "image cache \(socketPath)")
    }

    deinit { close(conn.fd) }

    /// Waits until `snapshot` is complete; its parent and image names. A failed dump is an
    /// error naming it.
    public func info(_ snapshot: String) throws -> (parent: String?, images: [String]) {
        let r = try conn.request(RemoteFrame(.info, snapshot: snapshot))
        guard r.kind == .ok else { throw TransportError(peer: conn.peer, "\(r.kind) frame in answer to info") }
        let names = r.text.isEmpty ? [] : r.text.split(separator: "\n").map(String.init)
        return (r.name.isEmpty ? nil : r.name, names)
    }

    /// A read-only (sealed) fd holding image `name`, and its size. The caller closes it.
    public func open(_ snapshot: String, _ name: String) throws -> (fd: Int32, size: Int) {
        let r = try conn.request(RemoteFrame(.getFd, snapshot: snapshot, name: name))
        guard r.kind == .ok, r.payload.count == 8 else { throw TransportError(peer: conn.peer, "bad answer to getfd of \(name)") }
        var size: UInt64 = 0
        for i in 0..<8 { size |= UInt64(r.payload[i]) << (8 * UInt64(i)) }
        var fd: Int32 = -1
        let n = ck_recv_fds(conn.fd, &fd, 1)
        guard n == 1, fd >= 0 else { throw TransportError(peer: conn.peer, "no fd passed for image \(name)") }
        var st = stat()
        guard fstat(fd, &st) == 0, UInt64(st.st_size) == size else { close(fd); throw TransportError(peer: conn.peer, "image \(name): fd size does not match \(size)") }
        return (fd, Int(size))
    }

    /// The bytes of image `name` (refused above ImageCodec.maxImageSize).
    public func read(_ snapshot: String, _ name: String) throws -> [UInt8] {
        let (fd, size) = try open(snapshot, name)
        defer { close(fd) }
        guard size <= ImageCodec.maxImageSize else { throw ImageError.tooLarge(file: "\(snapshot)/\(name)", size: size, limit: ImageCodec.maxImageSize) }
        var buf = [UInt8](repeating: 0, count: size)
        var off = 0
        while off < size {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + off, size - off, off_t(off)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw ImageError.ioAt(file: "\(snapshot)/\(name)", offset: off, errno: n < 0 ? errno : EIO, what: "read") }
            off += n
        }
        return buf
    }
}
