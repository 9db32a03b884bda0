import Foundation
import SwiftProtobuf

/// CRIU's framing: [first magic] magic, then for each entry a little-endian u32 length and the
/// protobuf bytes. Decoding validates everything before trusting it.
public enum ImageCodec {
    /// No single entry of ours comes near this; a larger length means a corrupt file.
    public static let maxEntrySize = 64 << 20
    /// No metadata image of ours comes near this either (pages files are read by range instead).
    public static let maxImageSize = 512 << 20

    public static func header(_ kind: ImageKind) -> [UInt8] {
        var out: [UInt8] = []
        if let f = kind.firstMagic { appendU32(&out, f) }
        if let m = kind.magic { appendU32(&out, m) }
        return out
    }

    public static func appendU32(_ out: inout [UInt8], _ v: UInt32) {
        out.append(UInt8(v & 0xff)); out.append(UInt8(v >> 8 & 0xff))
        out.append(UInt8(v >> 16 & 0xff)); out.append(UInt8(v >> 24 & 0xff))
    }

    public static func appendEntry<M: SwiftProtobuf.Message>(_ out: inout [UInt8], _ msg: M) throws {
        guard msg.isInitialized else { throw ImageError.incompleteEntry(message: M.protoMessageName) }
        let bytes: [UInt8] = try msg.serializedBytes()
        // A reader would refuse it, so refuse to write it.
        guard bytes.count <= maxEntrySize else { throw ImageError.entryTooLarge(message: M.protoMessageName, size: bytes.count, limit: maxEntrySize) }
        appendU32(&out, UInt32(bytes.count))
        out.append(contentsOf: bytes)
    }

    public static func encode<M: SwiftProtobuf.Message>(_ kind: ImageKind, _ entries: [M]) throws -> [UInt8] {
        var out = header(kind)
        for e in entries { try appendEntry(&out, e) }
        return out
    }

    /// A cursor over an image's bytes that knows the file name for errors.
    public struct Reader {
        public let file: String
        let bytes: [UInt8]
        public private(set) var offset = 0

        public init(file: String, bytes: [UInt8]) { self.file = file; self.bytes = bytes }

        public var atEnd: Bool { offset >= bytes.count }

        mutating func u32() throws -> UInt32 {
            guard bytes.count - offset >= 4 else {
                throw ImageError.truncated(file: file, offset: offset, needed: 4, available: bytes.count - offset)
            }
            let v = UInt32(bytes[offset]) | UInt32(bytes[offset + 1]) << 8 | UInt32(bytes[offset + 2]) << 16 | UInt32(bytes[offset + 3]) << 24
            offset += 4
            return v
        }

        public mutating func readHeader(_ kind: ImageKind) throws {
            if let f = kind.firstMagic {
                let at = offset
                let got = try u32()
                guard got == f else { throw ImageError.badMagic(file: file, offset: at, expected: f, found: got) }
            }
            if let m = kind.magic {
                let at = offset
                let got = try u32()
                guard got == m else { throw ImageError.badMagic(file: file, offset: at, expected: m, found: got) }
            }
        }

        public mutating func next<M: SwiftProtobuf.Message>(_ type: M.Type) throws -> M {
            let at = offset
            let len = try u32()
            guard len <= UInt32(ImageCodec.maxEntrySize) else {
                throw ImageError.oversized(file: file, offset: at, length: len, limit: ImageCodec.maxEntrySize)
            }
            guard bytes.count - offset >= Int(len) else {
                throw ImageError.truncated(file: file, offset: offset, needed: Int(len), available: bytes.count - offset)
            }
            let slice = bytes[offset..<(offset + Int(len))]
            let msg: M
            do {
                // Partial decode, so that a missing required field is reported as such.
                var opts = BinaryDecodingOptions()
                opts.discardUnknownFields = false
                msg = try M(serializedBytes: Array(slice), partial: true, options: opts)
            } catch {
                throw ImageError.undecodable(file: file, offset: at, reason: "\(error)")
            }
            guard msg.isInitialized else {
                throw ImageError.missingRequired(file: file, offset: at, message: M.protoMessageName)
            }
            offset += Int(len)
            return msg
        }

        /// Like `next`, for a message type known only at run time (`ImageKind.entryType`).
        public mutating func next(dynamic type: any SwiftProtobuf.Message.Type) throws -> any SwiftProtobuf.Message {
            try next(type)
        }

        /// `count` raw bytes that follow an entry (pipe data, a queued packet).
        public mutating func raw(_ count: Int) throws -> [UInt8] {
            guard count >= 0, bytes.count - offset >= count else {
                throw ImageError.truncated(file: file, offset: offset, needed: count, available: bytes.count - offset)
            }
            defer { offset += count }
            return Array(bytes[offset..<(offset + count)])
        }

        public mutating func all<M: SwiftProtobuf.Message>(_ type: M.Type) throws -> [M] {
            var out: [M] = []
            while !atEnd { out.append(try next(type)) }
            return out
        }
    }
}
