import CKernel
import CZstd
import Glibc

/// The framed byte stream of a whole checkpoint (`cryo dump --stream-to`, docs/STREAM.md):
/// a 16-byte stream header, then frames. Every frame header is validated before its payload
/// is used; all integers are little-endian.
public enum StreamFormat {
    public static let magic: [UInt8] = Array("CRYOSTRM".utf8)
    public static let version: UInt16 = 1
    public static let streamHeaderSize = 16
    public static let frameHeaderSize = 20
    /// "FR": lets a reader tell a frame from bytes of a misplaced payload.
    public static let sync: UInt16 = 0x5246
    /// Bytes of an image per DATA frame, before compression: what bounds the writer's memory.
    public static let maxChunk = 1 << 20
    /// A compressed payload may be a little larger than what it holds (zstd's bound).
    public static let maxStored = maxChunk + (64 << 10)
    public static let maxNameLength = 255
    /// PARENT targets and ABORT reasons.
    public static let maxText = 4096
    /// Stream header flag: DATA frames may be compressed with zstd.
    public static let flagZstd: UInt16 = 1
    /// Frame flag: this payload is zstd-compressed.
    public static let frameZstd: UInt8 = 1

    public enum FrameType: UInt8, Sendable, CaseIterable {
        /// Next bytes of the named image.
        case data = 1
        /// The named image is complete; payload: its size (u64).
        case end = 2
        /// The snapshot's parent link; payload: the target path (name empty).
        case parent = 3
        /// The checkpoint is complete; payload: image count (u64), image bytes (u64).
        case commit = 4
        /// The dump failed; payload: why (text).
        case abort = 5
    }

    public struct FrameHeader: Equatable, Sendable {
        public var type: FrameType
        public var flags: UInt8 = 0
        public var name: String
        /// Payload bytes in the stream.
        public var storedLength: Int
        /// Payload bytes once decompressed (= storedLength when not compressed).
        public var rawLength: Int
        public var crc: UInt32 = 0
        public init(type: FrameType, flags: UInt8 = 0, name: String, storedLength: Int, rawLength: Int) {
            self.type = type; self.flags = flags; self.name = name; self.storedLength = storedLength; self.rawLength = rawLength
        }
    }

    public static func streamHeader(compressed: Bool) -> [UInt8] {
        var b = magic
        put(&b, version)
        put(&b, compressed ? flagZstd : 0)
        put(&b, UInt32(0))
        return b
    }

    /// Checks the stream header; returns its flags.
    public static func parseStreamHeader(_ b: [UInt8]) throws -> UInt16 {
        guard b.count == streamHeaderSize, Array(b[0..<8]) == magic else {
            throw StreamError.corrupt(offset: 0, image: nil, reason: "not a cryo stream (no CRYOSTRM magic)")
        }
        let v = get(b, 8, UInt16.self), flags = get(b, 10, UInt16.self)
        guard v == version else { throw StreamError.corrupt(offset: 8, image: nil, reason: "stream version \(v), cryo reads version \(version)") }
        guard flags & ~flagZstd == 0, get(b, 12, UInt32.self) == 0 else {
            throw StreamError.corrupt(offset: 10, image: nil, reason: "unknown stream flags 0x\(String(flags, radix: 16))")
        }
        return flags
    }

    /// Header bytes and name of a frame, with the CRC over them and `payload` filled in.
    public static func encodeHeader(_ h: FrameHeader, payload: UnsafeRawBufferPointer) -> [UInt8] {
        encodeHeader(h) { ck_crc32c($0, payload.baseAddress, payload.count) }
    }

    /// The same, the CRC carried over the payload by `payloadCRC` (from the header and name's).
    static func encodeHeader(_ h: FrameHeader, payloadCRC: (UInt32) throws -> UInt32) rethrows -> [UInt8] {
        let name = Array(h.name.utf8)
        var b: [UInt8] = []
        b.reserveCapacity(frameHeaderSize + name.count)
        put(&b, sync)
        b.append(h.type.rawValue)
        b.append(h.flags)
        put(&b, UInt16(name.count))
        put(&b, UInt16(0))
        put(&b, UInt32(h.storedLength))
        put(&b, UInt32(h.rawLength))
        var crc = b.withUnsafeBytes { ck_crc32c(0, $0.baseAddress, $0.count) }
        crc = name.withUnsafeBytes { ck_crc32c(crc, $0.baseAddress, $0.count) }
        crc = try payloadCRC(crc)
        put(&b, crc)
        b += name
        return b
    }

    /// Decodes and validates the fixed part of a frame header (before its name): the caller
    /// reads `nameLength` bytes of name, then `storedLength` bytes of payload.
    public static func decodeFixed(_ b: [UInt8], at offset: Int) throws -> (type: FrameType, flags: UInt8, nameLength: Int, stored: Int, raw: Int, crc: UInt32) {
        func bad(_ r: String) -> StreamError { .corrupt(offset: offset, image: nil, reason: r) }
        guard b.count == frameHeaderSize else { throw bad("short frame header") }
        guard get(b, 0, UInt16.self) == sync else { throw bad("no frame here (bad sync bytes 0x\(String(get(b, 0, UInt16.self), radix: 16)))") }
        guard let type = FrameType(rawValue: b[2]) else { throw bad("unknown frame type \(b[2])") }
        let flags = b[3]
        let nameLength = Int(get(b, 4, UInt16.self))
        let stored = Int(get(b, 8, UInt32.self)), raw = Int(get(b, 12, UInt32.self))
        guard get(b, 6, UInt16.self) == 0 else { throw bad("reserved header bytes are not zero") }
        guard flags & ~frameZstd == 0 else { throw bad("unknown frame flags 0x\(String(flags, radix: 16))") }
        guard nameLength <= maxNameLength else { throw bad("image name of \(nameLength) bytes (at most \(maxNameLength))") }
        let named = type == .data || type == .end
        guard named == (nameLength > 0) else { throw bad(named ? "\(type) frame without an image name" : "\(type) frame with an image name") }
        guard flags == 0 || type == .data else { throw bad("\(type) frame marked compressed") }
        if flags & frameZstd != 0 {
            guard stored <= maxStored, raw <= maxChunk, stored > 0 else { throw bad("compressed payload of \(stored) bytes for \(raw) (at most \(maxStored) for \(maxChunk))") }
        } else {
            guard stored == raw else { throw bad("payload of \(stored) bytes announces \(raw) uncompressed") }
        }
        switch type {
        case .data: guard raw <= maxChunk, raw > 0 else { throw bad("data frame of \(raw) bytes (1 to \(maxChunk))") }
        case .end: guard raw == 8 else { throw bad("end frame payload of \(raw) bytes, not 8") }
        case .commit: guard raw == 16 else { throw bad("commit frame payload of \(raw) bytes, not 16") }
        case .parent, .abort: guard raw <= maxText, raw > 0 || type == .abort else { throw bad("\(type) frame payload of \(raw) bytes (at most \(maxText))") }
        }
        return (type, flags, nameLength, stored, raw, get(b, 16, UInt32.self))
    }

    /// An image name from a stream: one plain file name, so it cannot leave its folder.
    public static func validName(_ bytes: [UInt8]) -> String? {
        guard !bytes.isEmpty, bytes.count <= maxNameLength, !bytes.contains(0), !bytes.contains(UInt8(ascii: "/")) else { return nil }
        guard let s = String(validating: bytes, as: UTF8.self), !s.contains(".."), s != "." else { return nil }
        return s
    }

    public static func crc(header: [UInt8], name: [UInt8], payload: UnsafeRawBufferPointer) -> UInt32 {
        var c = header.withUnsafeBytes { ck_crc32c(0, $0.baseAddress, 16) }
        c = name.withUnsafeBytes { ck_crc32c(c, $0.baseAddress, $0.count) }
        return ck_crc32c(c, payload.baseAddress, payload.count)
    }

    /// zstd at its fastest level that still pays: a stream is about time, not size.
    public static let zstdLevel: Int32 = 1

    /// Decompresses one DATA payload into exactly `raw` bytes.
    public static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) -> Bool {
        let n = ZSTD_decompress(dst.baseAddress, dst.count, src.baseAddress, src.count)
        return ZSTD_isError(n) == 0 && n == dst.count
    }

    /// A pipe of 1 MiB instead of 64 KiB: a frame per write instead of sixteen wake-ups.
    /// Best effort (pipe-max-size may be lower); other fds are left alone.
    public static func widenPipe(_ fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFIFO else { return }
        // Room for several frames lets the writer run ahead instead of taking turns with the
        // reader at every frame; past pipe-max-size only with CAP_SYS_RESOURCE. Never shrinks
        // a pipe the other end widened.
        let now = ck_fcntl_int(fd, 1032 /* F_GETPIPE_SZ */, 0)
        for size in [pipeSize, maxChunk] where size > now {
            if ck_fcntl_int(fd, 1031 /* F_SETPIPE_SZ */, Int32(size)) >= 0 { return }
        }
    }
    /// The pipe size a stream asks for first (8 frames).
    static let pipeSize = 8 * maxChunk

    static func put<T: FixedWidthInteger>(_ b: inout [UInt8], _ v: T) { withUnsafeBytes(of: v.littleEndian) { b.append(contentsOf: $0) } }
    static func get<T: FixedWidthInteger>(_ b: [UInt8], _ at: Int, _: T.Type) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(b[at + i]) << (8 * i) }
        return v
    }
}

public enum StreamError: Error, CustomStringConvertible, Equatable {
    /// The stream ended before its commit frame.
    case truncated(offset: Int, image: String?, reason: String)
    /// A frame that cannot be right.
    case corrupt(offset: Int, image: String?, reason: String)
    /// The dump wrote an abort frame.
    case dumpFailed(offset: Int, reason: String)
    case io(what: String, errno: Int32)

    public var description: String {
        func at(_ o: Int, _ i: String?) -> String { "at byte \(o)" + (i.map { " (image \($0))" } ?? "") }
        switch self {
        case .truncated(let o, let i, let r): return "stream truncated \(at(o, i)): \(r)"
        case .corrupt(let o, let i, let r): return "stream corrupt \(at(o, i)): \(r)"
        case .dumpFailed(let o, let r): return "the dump failed (abort frame at byte \(o)): \(r)"
        case .io(let w, let e): return "stream: \(w): \(String(cString: strerror(e)))"
        }
    }
}
