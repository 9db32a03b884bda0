import Glibc

/// The framed protocol of `--remote`: dump -> image proxy (unix socket) -> image cache (TCP),
/// and restore -> image cache (unix socket). Every frame is a 24-byte header (little endian)
/// `{u32 magic; u8 kind; u8 flags = 0; u16 snapshotLength; u16 nameLength; u16 reserved = 0;
/// u64 length; u32 reserved = 0}`, then the snapshot id, the image name and `length` payload bytes.
/// Every hop parses each header with `RemoteFrame.parse` before it acts on it.
public enum RemoteFrameKind: UInt8, Sendable, CaseIterable {
    /// A new snapshot; name = its parent snapshot's id, or empty.
    case begin = 1
    /// The next bytes of image `name` (1...maxChunk of them).
    case data = 2
    /// Image `name` is complete (an image without data frames is empty).
    case end = 3
    /// The snapshot is complete; answered with ok or error once it is stored.
    case complete = 4
    /// The dump failed; payload = why (names the dump).
    case failed = 5
    /// Image `name` of a complete snapshot: answered with its data frames and an end, or error.
    case get = 6
    /// Waits until the snapshot is complete or failed: ok (name = parent id, payload = the
    /// image names, one per line) or error.
    case info = 7
    case ok = 8
    case error = 9
    /// Like get, answered with ok (payload: u64 size) and the image as a sealed memfd passed
    /// with SCM_RIGHTS. Only on the cache's local unix socket.
    case getFd = 10
    /// `cryo migrate-receive` only: restore the complete snapshot; ok (payload: the root pid) or error.
    case restore = 11
}

public struct RemoteFrame: Equatable, Sendable {
    public var kind: RemoteFrameKind
    public var snapshot: String
    public var name: String
    public var payload: [UInt8]

    public init(_ kind: RemoteFrameKind, snapshot: String, name: String = "", payload: [UInt8] = []) {
        self.kind = kind; self.snapshot = snapshot; self.name = name; self.payload = payload
    }

    public static let magic: UInt32 = 0x5852_5943  // "CYRX" read as bytes 43 59 52 58
    public static let headerSize = 24
    public static let maxIDLength = 255
    /// Largest data frame: senders split images into chunks no bigger.
    public static let maxChunk = 4 << 20
    /// Largest payload of every other kind (error texts, image lists).
    public static let maxMessage = 1 << 20

    /// What the fixed header announces.
    public struct Header: Equatable, Sendable {
        public var kind: RemoteFrameKind
        public var snapshotLength: Int
        public var nameLength: Int
        public var length: Int
        /// Bytes that follow the header.
        public var rest: Int { snapshotLength + nameLength + length }
    }

    /// Checks the fixed header: magic, kind, zero padding and each length against its limit.
    public static func parse(header b: [UInt8]) throws -> Header {
        guard b.count >= headerSize else { throw RemoteProtocolError("short header: \(b.count) of \(headerSize) bytes") }
        func u16(_ o: Int) -> Int { Int(b[o]) | Int(b[o + 1]) << 8 }
        let magic = UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
        guard magic == Self.magic else { throw RemoteProtocolError("bad magic 0x\(String(magic, radix: 16))") }
        guard let kind = RemoteFrameKind(rawValue: b[4]) else { throw RemoteProtocolError("unknown frame kind \(b[4])") }
        guard b[5] == 0, u16(10) == 0, b[20] == 0, b[21] == 0, b[22] == 0, b[23] == 0 else {
            throw RemoteProtocolError("nonzero reserved header bytes")
        }
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(b[12 + i]) << (8 * UInt64(i)) }
        let h = Header(kind: kind, snapshotLength: u16(6), nameLength: u16(8), length: 0)
        guard h.snapshotLength >= 1, h.snapshotLength <= maxIDLength else { throw RemoteProtocolError("\(kind): snapshot id of \(h.snapshotLength) bytes (1...\(maxIDLength))") }
        guard h.nameLength <= maxIDLength else { throw RemoteProtocolError("\(kind): image name of \(h.nameLength) bytes (at most \(maxIDLength))") }
        let needsName: Bool?
        let limit: Int
        switch kind {
        case .begin: needsName = nil; limit = 0
        case .data: needsName = true; limit = maxChunk
        case .end, .get, .getFd: needsName = true; limit = 0
        case .complete, .info: needsName = false; limit = 0
        case .restore: needsName = nil; limit = 0
        case .failed, .error: needsName = false; limit = maxMessage
        case .ok: needsName = nil; limit = maxMessage
        }
        if needsName == true && h.nameLength == 0 { throw RemoteProtocolError("\(kind) without an image name") }
        if needsName == false && h.nameLength != 0 { throw RemoteProtocolError("\(kind) with an image name") }
        guard length <= UInt64(limit) else { throw RemoteProtocolError("\(kind): length \(length) over the limit of \(limit)") }
        if kind == .data && length == 0 { throw RemoteProtocolError("empty data frame") }
        return Header(kind: kind, snapshotLength: h.snapshotLength, nameLength: h.nameLength, length: Int(length))
    }

    /// The name of a restore frame that asks for a lazy (post-copy) restore.
    public static let lazyRestore = "lazy"

    /// A snapshot id or image name: 1...255 bytes of UTF-8, no `/`, no `..`, no NUL, no
    /// control characters. Neither is ever used as a path, but callers that mirror images to a
    /// folder may, so the rule is the same everywhere.
    public static func checkID(_ bytes: ArraySlice<UInt8>, what: String) throws -> String {
        guard !bytes.isEmpty, bytes.count <= maxIDLength else { throw RemoteProtocolError("\(what) of \(bytes.count) bytes") }
        guard !bytes.contains(0) else { throw RemoteProtocolError("\(what) contains NUL") }
        guard !bytes.contains(UInt8(ascii: "/")) else { throw RemoteProtocolError("\(what) contains '/'") }
        guard !bytes.contains(where: { $0 < 0x20 || $0 == 0x7f }) else { throw RemoteProtocolError("\(what) contains a control character") }
        guard let s = String(validating: bytes, as: UTF8.self) else { throw RemoteProtocolError("\(what) is not UTF-8") }
        guard !s.contains("..") else { throw RemoteProtocolError("\(what) '\(s)' contains '..'") }
        guard s != "." else { throw RemoteProtocolError("\(what) is '.'") }
        return s
    }

    /// The whole frame from bytes that start with it; returns the frame and bytes used.
    /// Used by the fuzz target and by the socket reader below.
    public static func decode(_ b: [UInt8]) throws -> (frame: RemoteFrame, consumed: Int) {
        let h = try parse(header: Array(b.prefix(headerSize)))
        guard b.count >= headerSize + h.rest else { throw RemoteProtocolError("frame cut short: \(b.count) of \(headerSize + h.rest) bytes") }
        return (try body(h, Array(b[headerSize..<headerSize + h.rest])), headerSize + h.rest)
    }

    static func body(_ h: Header, ids: [UInt8], payload: [UInt8]) throws -> RemoteFrame {
        let snap = try checkID(ids[0..<h.snapshotLength], what: "snapshot id")
        let name = h.nameLength == 0 ? "" : try checkID(ids[h.snapshotLength..<h.snapshotLength + h.nameLength], what: h.kind == .begin ? "parent snapshot id" : "image name")
        return RemoteFrame(h.kind, snapshot: snap, name: name, payload: payload)
    }

    static func body(_ h: Header, _ rest: [UInt8]) throws -> RemoteFrame {
        let snap = try checkID(rest[0..<h.snapshotLength], what: "snapshot id")
        let name = h.nameLength == 0 ? "" : try checkID(rest[h.snapshotLength..<h.snapshotLength + h.nameLength], what: h.kind == .begin ? "parent snapshot id" : "image name")
        return RemoteFrame(h.kind, snapshot: snap, name: name, payload: Array(rest[(h.snapshotLength + h.nameLength)...]))
    }

    /// The header and ids of a frame whose payload is `length` bytes (sent separately).
    public static func encodeHead(_ kind: RemoteFrameKind, snapshot: String, name: String, length: Int) -> [UInt8] {
        let s = Array(snapshot.utf8), n = Array(name.utf8)
        var b = [UInt8](repeating: 0, count: headerSize)
        for i in 0..<4 { b[i] = UInt8(truncatingIfNeeded: magic >> (8 * UInt32(i))) }
        b[4] = kind.rawValue
        b[6] = UInt8(s.count & 0xff); b[7] = UInt8(s.count >> 8)
        b[8] = UInt8(n.count & 0xff); b[9] = UInt8(n.count >> 8)
        for i in 0..<8 { b[12 + i] = UInt8(truncatingIfNeeded: UInt64(length) >> (8 * UInt64(i))) }
        return b + s + n
    }

    public func encode() -> [UInt8] {
        Self.encodeHead(kind, snapshot: snapshot, name: name, length: payload.count) + payload
    }

    public var text: String { String(decoding: payload, as: UTF8.self) }
}

public struct RemoteProtocolError: Error, CustomStringConvertible, Sendable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "remote images protocol: \(reason)" }
}

/// Reading and writing frames on a connected socket (TCP or unix stream).
public struct RemoteConnection {
    public let fd: Int32
    public let peer: String
    public init(fd: Int32, peer: String) { self.fd = fd; self.peer = peer }

    /// The next frame's header and ids, validated; nil when the peer closed cleanly between frames.
    func readHead() throws -> (RemoteFrame.Header, [UInt8])? {
        var head = [UInt8](repeating: 0, count: RemoteFrame.headerSize)
        let got = try head.withUnsafeMutableBytes { try TCP.readFull(fd, $0.baseAddress!, $0.count) }
        if got == 0 { return nil }
        guard got == head.count else { throw TransportError(peer: peer, "connection closed inside a frame header") }
        let h: RemoteFrame.Header
        do { h = try RemoteFrame.parse(header: head) } catch { throw TransportError(peer: peer, "\(error)") }
        var ids = [UInt8](repeating: 0, count: h.snapshotLength + h.nameLength)
        let n = try ids.withUnsafeMutableBytes { try TCP.readFull(fd, $0.baseAddress!, $0.count) }
        guard n == ids.count else { throw TransportError(peer: peer, "connection closed inside a \(h.kind) frame (\(n) of \(h.rest) bytes)") }
        return (h, ids)
    }

    /// The next frame, validated, a data frame without its payload: that is left on the socket,
    /// `dataLength` bytes, for the caller to move on by splice (SpliceRelay) before the next read.
    public func readLeavingData() throws -> (frame: RemoteFrame, dataLength: Int)? {
        guard let (h, ids) = try readHead() else { return nil }
        if h.kind != .data { return (try readPayload(h, ids), 0) }
        do { return (try RemoteFrame.body(h, ids: ids, payload: []), h.length) } catch { throw TransportError(peer: peer, "\(error)") }
    }

    /// The next frame, validated; nil when the peer closed cleanly between frames.
    public func read() throws -> RemoteFrame? {
        guard let (h, ids) = try readHead() else { return nil }
        return try readPayload(h, ids)
    }

    /// The payload straight into its own array: a data frame is copied once from the socket,
    /// never zero-filled or sliced again (each hop moves 4 MiB frames).
    func readPayload(_ h: RemoteFrame.Header, _ ids: [UInt8]) throws -> RemoteFrame {
        var short = -1
        let payload = try [UInt8](unsafeUninitializedCapacity: h.length) { buf, count in
            count = 0
            guard h.length > 0 else { return }
            let got = try TCP.readFull(fd, buf.baseAddress!, h.length)
            if got != h.length { short = got; return }
            count = h.length
        }
        guard short < 0 else { throw TransportError(peer: peer, "connection closed inside a \(h.kind) frame (\(ids.count + short) of \(h.rest) bytes)") }
        do { return try RemoteFrame.body(h, ids: ids, payload: payload) } catch { throw TransportError(peer: peer, "\(error)") }
    }

    /// The next frame, which the peer must send.
    public func expect() throws -> RemoteFrame {
        guard let f = try read() else { throw TransportError(peer: peer, "connection closed") }
        return f
    }

    /// A data frame goes out from its payload as it is (no copy into one buffer).
    public func write(_ f: RemoteFrame) throws {
        guard f.kind == .data, !f.payload.isEmpty else { return try TCP.writeFull(fd, f.encode()) }
        try f.payload.withUnsafeBytes { try writeData(snapshot: f.snapshot, name: f.name, $0) }
    }

    /// A data frame straight from the caller's buffer (at most maxChunk bytes).
    public func writeData(snapshot: String, name: String, _ bytes: UnsafeRawBufferPointer) throws {
        let head = RemoteFrame.encodeHead(.data, snapshot: snapshot, name: name, length: bytes.count)
        try head.withUnsafeBytes { try TCP.writeFull(fd, $0, bytes) }
    }

    /// A data frame of `count` bytes (at most maxChunk) that wait in `pipe`, spliced on after
    /// the header.
    public func writeData(snapshot: String, name: String, from pipe: Int32, count: Int) throws {
        try TCP.writeFull(fd, RemoteFrame.encodeHead(.data, snapshot: snapshot, name: name, length: count))
        let r = Sys.spliceAll(from: pipe, to: fd, count: count, flags: 4 /* SPLICE_F_MORE */)
        guard r.moved == count else { throw TransportError(peer: peer, "splice of \(count - r.moved) more data bytes: \(String(cString: strerror(r.errno != 0 ? r.errno : EIO)))") }
    }

    /// Sends data frame `f` (from `readLeavingData`) on this connection, its `length` payload
    /// bytes moved by `relay` from `src`, where they still are.
    public func forwardData(_ f: RemoteFrame, length: Int, from src: RemoteConnection, relay: SpliceRelay) throws {
        try TCP.writeFull(fd, RemoteFrame.encodeHead(.data, snapshot: f.snapshot, name: f.name, length: length))
        let moved = try relay.move(from: src.fd, to: fd, count: length, what: "data of \(f.name) from \(src.peer) to \(peer)")
        guard moved == length else { throw TransportError(peer: src.peer, "connection closed inside a data frame (\(moved) of \(length) payload bytes)") }
    }

    /// Sends `f` and returns the answer; an error frame becomes a thrown error.
    public func request(_ f: RemoteFrame) throws -> RemoteFrame {
        try write(f)
        let r = try expect()
        if r.kind == .error { throw RemoteImageError(snapshot: f.snapshot, reason: r.text) }
        return r
    }
}

/// An error the cache (or proxy) answered with, for one snapshot.
public struct RemoteImageError: Error, CustomStringConvertible, Sendable {
    public let snapshot: String
    public let reason: String
    public init(snapshot: String, reason: String) { self.snapshot = snapshot; self.reason = reason }
    public var description: String { "image cache, snapshot \(snapshot): \(reason)" }
}

/// Unix stream sockets for the local side of proxy and cache.
public enum UnixStream {
    static func address(_ path: String) throws -> (sockaddr_un, socklen_t) {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let cap = MemoryLayout.size(ofValue: sa.sun_path)
        guard !bytes.isEmpty, bytes.count < cap else { throw TransportError(peer: path, "unix socket path must be 1...\(cap - 1) bytes") }
        withUnsafeMutableBytes(of: &sa.sun_path) { p in for (i, c) in bytes.enumerated() { p[i] = c } }
        return (sa, socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + 1))
    }

    /// Listens at `path` (mode 0600). A stale socket there is replaced; any other file is an error.
    public static func listen(path: String) throws -> Int32 {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFSOCK else { throw TransportError(peer: path, "exists and is not a socket") }
            unlink(path)
        }
        var (sa, len) = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(call: "socket", errno: errno, context: path) }
        let old = umask(0o177)
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        let e = errno
        umask(old)
        guard r == 0 else { close(fd); throw SystemCallError(call: "bind", errno: e, context: path) }
        guard Glibc.listen(fd, 16) == 0 else { let e = errno; close(fd); throw SystemCallError(call: "listen", errno: e, context: path) }
        return fd
    }

    public static func connect(path: String) throws -> Int32 {
        var (sa, len) = try address(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(call: "socket", errno: errno, context: path) }
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) } }
        guard r == 0 else { let e = errno; close(fd); throw SystemCallError(call: "connect", errno: e, context: path) }
        return fd
    }

    /// Root, or the uid this process runs as: the only peers the local sockets serve.
    public static func peerAllowed(_ fd: Int32) -> Bool {
        guard let p = TrackKeeper.peer(fd) else { return false }
        return p.uid == 0 || p.uid == getuid()
    }
}
