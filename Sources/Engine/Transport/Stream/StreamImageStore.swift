import CKernel
import CZstd
import Foundation
import Glibc

/// The dump side of a checkpoint stream: every image written to this store goes out on `fd`
/// as frames (StreamFormat) as it is written, so the dump holds at most a chunk per open
/// image. Images are not read back; a parent link goes out as a frame and resolves, on this
/// side, against `location`.
public final class StreamImageStore: SplicingImageStore, @unchecked Sendable {
    public let location: String
    let fd: Int32
    let compress: Bool
    /// A file this store created for the stream: removed by `discard`.
    let ownedPath: String?
    private let lock = NSLock()
    private var offset = 0
    private var failed: StreamError?
    private var finished: Set<String> = []
    private var parentLink: String?
    private var imageBytes: UInt64 = 0
    /// Bytes put on the stream (headers included).
    public var streamBytes: Int { lock.lock(); defer { lock.unlock() }; return offset }
    /// Payloads may be spliced onto the stream (a pipe, a socket, a file not opened O_APPEND).
    private var spliceOut: Bool
    /// A file: spliced bytes are copied into it at once. A pipe or socket may hold the task's
    /// pages by reference until its reader takes them.
    public let storesBeforeCommit: Bool
    /// Where a spliced payload is tee'd to for its CRC, and read from (created on first use).
    private var tee: (r: Int32, w: Int32)?
    private var crcBuf: UnsafeMutableRawPointer?

    /// Writes the stream header at once, so a reader that got a wrong fd knows early.
    public init(fd: Int32, location: String, compress: Bool, ownedPath: String? = nil) throws {
        self.fd = fd; self.location = location; self.compress = compress; self.ownedPath = ownedPath
        var st = stat()
        let type = fstat(fd, &st) == 0 ? st.st_mode & S_IFMT : 0
        storesBeforeCommit = type == S_IFREG
        spliceOut = !compress && (type == S_IFIFO || type == S_IFSOCK || (type == S_IFREG && fcntl(fd, F_GETFL) & O_APPEND == 0))
        StreamFormat.widenPipe(fd)
        try StreamFormat.streamHeader(compressed: compress).withUnsafeBytes { try put($0, UnsafeRawBufferPointer(start: nil, count: 0)) }
    }

    deinit {
        if let tee { close(tee.r); close(tee.w) }
        crcBuf?.deallocate()
    }

    /// Opens PATH for a stream (a file, a FIFO) or takes a decimal fd.
    public static func open(_ target: String, location: String, compress: Bool) throws -> StreamImageStore {
        // A reader that went away must fail the dump (EPIPE), not kill it with the tree frozen.
        signal(SIGPIPE, SIG_IGN)
        if let fd = Int32(target), fd >= 0 {
            guard fcntl(fd, F_GETFD) >= 0 else { throw StreamError.io(what: "fd \(fd)", errno: errno) }
            return try StreamImageStore(fd: fd, location: location, compress: compress)
        }
        var st = stat()
        let fd = Glibc.open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw StreamError.io(what: "open \(target)", errno: errno) }
        let regular = fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
        return try StreamImageStore(fd: fd, location: location, compress: compress, ownedPath: regular ? target : nil)
    }

    /// One frame: header, name and payload, written whole under the lock.
    func emit(_ type: StreamFormat.FrameType, name: String, payload: UnsafeRawBufferPointer, raw: Int, flags: UInt8 = 0) throws {
        let h = StreamFormat.encodeHeader(.init(type: type, flags: flags, name: name, storedLength: payload.count, rawLength: raw), payload: payload)
        try h.withUnsafeBytes { try put($0, payload) }
    }

    private func put(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) throws {
        lock.lock(); defer { lock.unlock() }
        try putLocked(a, b)
    }

    private func putLocked(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) throws {
        if let failed { throw failed }
        var iov = [iovec(iov_base: UnsafeMutableRawPointer(mutating: a.baseAddress), iov_len: a.count),
                   iovec(iov_base: UnsafeMutableRawPointer(mutating: b.baseAddress), iov_len: b.count)]
        var left = a.count + b.count
        while left > 0 {
            let n = writev(fd, &iov, 2)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let e = StreamError.io(what: "write at byte \(offset)", errno: n < 0 ? errno : EIO)
                failed = e
                throw e
            }
            offset += n
            left -= n
            iov.consume(n)
        }
    }

    /// A DATA frame whose `n` payload bytes wait in `pipe`: the CRC is taken from a tee'd
    /// duplicate, then the header goes out and the payload is spliced after it, by reference.
    /// False, with nothing consumed or written, when this stream cannot splice or the payload
    /// does not tee whole; the caller then reads it out and writes it.
    func emitSpliced(name: String, from pipe: Int32, count n: Int) throws -> Bool {
        lock.lock(); defer { lock.unlock() }
        if let failed { throw failed }
        guard spliceOut, n <= StreamFormat.maxChunk else { return false }
        if tee == nil {
            var p: [Int32] = [-1, -1]
            guard (try? p.withUnsafeMutableBufferPointer({ try Sys.call(.pipe2, Int(bitPattern: $0.baseAddress!), Int(O_CLOEXEC), context: "stream tee pipe") })) != nil else {
                spliceOut = false
                return false
            }
            tee = (p[0], p[1])
            crcBuf = UnsafeMutableRawPointer.allocate(byteCount: StreamFormat.maxChunk, alignment: 4096)
            if PipeSize.grow(p[1], upTo: StreamFormat.maxChunk) < StreamFormat.maxChunk { spliceOut = false; return false }
        }
        guard let tee, let crcBuf else { return false }
        let t = ck_syscall6(SyscallNumber.tee.rawValue, Int(pipe), Int(tee.w), n, 2 /* SPLICE_F_NONBLOCK */, 0, 0)
        if t != n {
            if t > 0 { try PipeBytes.read(tee.r, into: crcBuf, count: t) }
            return false
        }
        try PipeBytes.read(tee.r, into: crcBuf, count: n)
        let h = StreamFormat.encodeHeader(.init(type: .data, name: name, storedLength: n, rawLength: n)) { ck_crc32c($0, crcBuf, n) }
        try h.withUnsafeBytes { try putLocked($0, UnsafeRawBufferPointer(start: nil, count: 0)) }
        let r = Sys.spliceAll(from: pipe, to: fd, count: n, flags: 4 /* SPLICE_F_MORE */)
        offset += r.moved
        if r.moved == 0 && r.errno == EINVAL {
            // This fd takes no splice after all: the payload is read out and written.
            spliceOut = false
            try PipeBytes.read(pipe, count: n) { try putLocked($0, UnsafeRawBufferPointer(start: nil, count: 0)) }
            return true
        }
        guard r.moved == n else {
            let e = StreamError.io(what: "splice at byte \(offset)", errno: r.errno != 0 ? r.errno : EIO)
            failed = e
            throw e
        }
        return true
    }

    func published(_ name: String, size: Int) {
        lock.lock(); finished.insert(name); imageBytes += UInt64(size); lock.unlock()
    }

    public func names() throws -> [String] { lock.lock(); defer { lock.unlock() }; return Array(finished) }
    public func exists(_ name: String) -> Bool { lock.lock(); defer { lock.unlock() }; return finished.contains(name) }

    public func read(_ name: String) throws -> [UInt8] {
        throw ImageError.io(file: location + "/" + name, errno: ENOTSUP, what: "read back from a stream being written")
    }

    public func open(_ name: String) throws -> (fd: Int32, size: Int) {
        throw ImageError.io(file: location + "/" + name, errno: ENOTSUP, what: "read back from a stream being written")
    }

    public func create(_ name: String) throws -> ImageWriter {
        guard StreamFormat.validName(Array(name.utf8)) != nil else {
            throw ImageError.io(file: location + "/" + name, errno: EINVAL, what: "name an image of a stream")
        }
        return Writer(store: self, name: name)
    }

    public func parent() throws -> ImageStore? {
        lock.lock(); let link = parentLink; lock.unlock()
        return try link.map { try LocalImageStore.folder($0, parentOf: location) }
    }

    public func setParent(_ target: String?) throws {
        lock.lock(); parentLink = target; lock.unlock()
        guard let target else { return }
        let t = Array(target.utf8)
        guard !t.isEmpty, t.count <= StreamFormat.maxText, !t.contains(0) else {
            throw ImageError.chain(dir: location, reason: "parent link \(target) cannot go on a stream")
        }
        try t.withUnsafeBytes { try emit(.parent, name: "", payload: $0, raw: t.count) }
    }

    public func commit() throws {
        lock.lock(); let count = UInt64(finished.count), bytes = imageBytes; lock.unlock()
        var p: [UInt8] = []
        StreamFormat.put(&p, count)
        StreamFormat.put(&p, bytes)
        try p.withUnsafeBytes { try emit(.commit, name: "", payload: $0, raw: 16) }
    }

    /// Tells the reader the dump failed (if the stream still takes bytes), and removes a
    /// stream file this store created.
    public func discard() {
        let why = Array("the dump failed (see its log)".utf8)
        _ = try? why.withUnsafeBytes { try emit(.abort, name: "", payload: $0, raw: why.count) }
        if let ownedPath { unlink(ownedPath) }
    }

    /// Cuts what it is given into DATA frames of at most maxChunk, compressed when asked.
    final class Writer: SplicingImageWriter {
        let store: StreamImageStore
        let name: String
        var size = 0
        var done = false
        var cctx: OpaquePointer?
        var out: [UInt8] = []

        init(store: StreamImageStore, name: String) { self.store = store; self.name = name }
        deinit { if let cctx { ZSTD_freeCCtx(cctx) } }

        func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard !done else { throw ImageError.io(file: name, errno: EBADF, what: "write after finish") }
            var off = 0
            while off < bytes.count {
                let n = min(StreamFormat.maxChunk, bytes.count - off)
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[off..<(off + n)])
                if store.compress {
                    if cctx == nil { cctx = ZSTD_createCCtx(); out = [UInt8](repeating: 0, count: ZSTD_compressBound(StreamFormat.maxChunk)) }
                    let c = out.withUnsafeMutableBytes { ZSTD_compressCCtx(cctx, $0.baseAddress, $0.count, chunk.baseAddress, n, StreamFormat.zstdLevel) }
                    if ZSTD_isError(c) == 0 && c < n && c <= StreamFormat.maxStored {
                        try out.withUnsafeBytes { try store.emit(.data, name: name, payload: UnsafeRawBufferPointer(rebasing: $0[0..<c]), raw: n, flags: StreamFormat.frameZstd) }
                    } else {
                        try store.emit(.data, name: name, payload: chunk, raw: n)
                    }
                } else {
                    try store.emit(.data, name: name, payload: chunk, raw: n)
                }
                off += n
            }
            size += bytes.count
        }

        func splice(from pipe: Int32, count: Int) throws {
            guard !done else { throw ImageError.io(file: name, errno: EBADF, what: "write after finish") }
            var left = count
            while left > 0 {
                let n = min(StreamFormat.maxChunk, left)
                if try store.emitSpliced(name: name, from: pipe, count: n) { size += n } else {
                    try PipeBytes.read(pipe, count: n) { try write($0) }
                }
                left -= n
            }
        }

        func finish() throws {
            guard !done else { return }
            var p: [UInt8] = []
            StreamFormat.put(&p, UInt64(size))
            try p.withUnsafeBytes { try store.emit(.end, name: name, payload: $0, raw: 8) }
            done = true
            store.published(name, size: size)
        }

        /// Nothing to take back: an image without END never counts, and a failed dump ends
        /// its stream with ABORT.
        func abort() { done = true }
    }
}
