import CKernel
import Glibc

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
