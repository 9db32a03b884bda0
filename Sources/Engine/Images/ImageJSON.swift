import Foundation
import SwiftProtobuf

/// Images as JSON and back, in crit's shape: `{"magic": "CORE", "entries": [...]}`, entries as
/// protobuf JSON with CRIU's field names, the bytes that follow an entry (pipe data, queued
/// packets, TCP queues, a ghost file's contents) as base64 under "extra". A pages image (raw,
/// no header) is a summary, or its bytes as base64 with `pages`. Encoding a decoded image gives
/// back the same bytes for every image cryo writes.
public enum ImageJSON {
    public enum Failure: Error, CustomStringConvertible {
        case unknownImage(file: String, reason: String)
        case badJSON(file: String, reason: String)
        public var description: String {
            switch self {
            case .unknownImage(let f, let r): return "\(f): not an image cryo knows: \(r)"
            case .badJSON(let f, let r): return "\(f): \(r)"
            }
        }
    }

    /// The kind of an image, from its magic (its name only for raw pages images and to tell
    /// pagemaps of tasks from those of shared memory, which share a magic).
    public static func kind(of bytes: [UInt8], file: String) throws -> ImageKind {
        let name = (file as NSString).lastPathComponent
        if let (k, _) = ImageKind.parse(fileName: name), k == .pages { return .pages }
        // iproute2's save streams (ifaddr, route, route6) start with its own magics.
        if let (k, _) = ImageKind.parse(fileName: name), k == .ifaddr || k == .route || k == .route6 { return k }
        func u32(_ at: Int) -> UInt32? {
            guard bytes.count >= at + 4 else { return nil }
            return UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        guard let first = u32(0) else {
            throw ImageError.truncated(file: file, offset: 0, needed: 4, available: bytes.count)
        }
        let candidates: [ImageKind]
        if first == ImageKind.commonMagic, let second = u32(4) {
            candidates = ImageKind.allCases.filter { $0.firstMagic == ImageKind.commonMagic && $0.magic == second }
        } else {
            candidates = ImageKind.allCases.filter { $0.firstMagic == nil && $0.magic == first }
        }
        if candidates.count > 1, let (k, _) = ImageKind.parse(fileName: name), candidates.contains(k) { return k }
        guard let k = candidates.first else {
            let (m, at) = first == ImageKind.commonMagic ? (u32(4) ?? 0, 4) : (first, 0)
            throw Failure.unknownImage(file: file, reason: "magic 0x\(String(m, radix: 16)) at offset \(at) is no image kind cryo reads")
        }
        return k
    }

    static let jsonOptions: JSONEncodingOptions = {
        var o = JSONEncodingOptions()
        o.preserveProtoFieldNames = true
        return o
    }()

    /// The image at `file` as crit-shaped JSON (one line; `pretty` indents it).
    public static func decode(file: String, pages: Bool = false, pretty: Bool = false) throws -> String {
        if isPages(file) {
            let size = try pagesSize(file)
            var root: [String: Any] = ["magic": ImageKind.pages.criuName, "size": size, "nr_pages": size / imagePageSize]
            if pages { root["data"] = Data(try ImageDirectory.readFile(file)).base64EncodedString() }
            return try render(root, pretty: pretty)
        }
        let bytes = try ImageDirectory.readFile(file)
        let kind = try kind(of: bytes, file: file)
        var root: [String: Any] = ["magic": kind.criuName]
        guard let entryType = kind.entryType else { throw Failure.unknownImage(file: file, reason: "no entry type") }
        var r = ImageCodec.Reader(file: file, bytes: bytes)
        try r.readHeader(kind)
        var entries: [Any] = []
        func json(_ m: any SwiftProtobuf.Message, at: Int) throws -> [String: Any] {
            let s: String
            do { s = try m.jsonString(options: jsonOptions) } catch {
                throw ImageError.undecodable(file: file, offset: at, reason: "as JSON: \(error)")
            }
            return (try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any]) ?? [:]
        }
        if let headType = kind.headType {
            let at = r.offset
            entries.append(try json(try r.next(dynamic: headType), at: at))
        }
        while !r.atEnd {
            let at = r.offset
            let e = try r.next(dynamic: entryType)
            var obj = try json(e, at: at)
            if let len = kind.payloadLength {
                obj["extra"] = Data(try r.raw(len(e))).base64EncodedString()
            } else if kind.hasRawTail {
                obj["extra"] = Data(try r.raw(bytes.count - r.offset)).base64EncodedString()
            } else if let extra = try IpcImages.payload(kind, e, &r) {
                obj["extra"] = Data(extra).base64EncodedString()
            }
            entries.append(obj)
        }
        root["entries"] = entries
        return try render(root, pretty: pretty)
    }

    /// The image bytes for crit-shaped JSON (`file` names the input in errors).
    public static func encode(json text: String, file: String) throws -> [UInt8] {
        guard let root = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
            throw Failure.badJSON(file: file, reason: "not a JSON object")
        }
        guard let magic = root["magic"] as? String else { throw Failure.badJSON(file: file, reason: "no \"magic\"") }
        let kinds = ImageKind.allCases.filter { $0.criuName == magic }
        guard let kind = kinds.first else { throw Failure.badJSON(file: file, reason: "unknown magic \"\(magic)\"") }
        if kind == .pages {
            guard let b64 = root["data"] as? String, let data = Data(base64Encoded: b64) else {
                throw Failure.badJSON(file: file, reason: "a pages image needs its bytes: decode it with --pages")
            }
            return [UInt8](data)
        }
        guard let entries = root["entries"] as? [Any] else { throw Failure.badJSON(file: file, reason: "no \"entries\" list") }
        guard let entryType = kind.entryType else { throw Failure.badJSON(file: file, reason: "\(magic) has no entries") }
        var out = ImageCodec.header(kind)
        for (i, any) in entries.enumerated() {
            guard var obj = any as? [String: Any] else { throw Failure.badJSON(file: file, reason: "entry \(i) is not an object") }
            var extra: [UInt8]?
            if let x = obj.removeValue(forKey: "extra") {
                guard let s = x as? String, let d = Data(base64Encoded: s) else {
                    throw Failure.badJSON(file: file, reason: "entry \(i): \"extra\" is not base64")
                }
                extra = [UInt8](d)
            }
            let type: any SwiftProtobuf.Message.Type = (i == 0 ? kind.headType : nil) ?? entryType
            let msg: any SwiftProtobuf.Message
            do {
                let data = try JSONSerialization.data(withJSONObject: obj)
                msg = try type.init(jsonUTF8Bytes: data, extensions: nil, options: JSONDecodingOptions())
            } catch {
                throw Failure.badJSON(file: file, reason: "entry \(i) is no \(type.protoMessageName): \(error)")
            }
            try appendEntry(&out, msg)
            if let extra {
                if let len = kind.payloadLength, len(msg) != extra.count {
                    throw Failure.badJSON(file: file, reason: "entry \(i) announces \(len(msg)) bytes but \"extra\" holds \(extra.count)")
                }
                out.append(contentsOf: extra)
            } else if let len = kind.payloadLength, len(msg) != 0 {
                throw Failure.badJSON(file: file, reason: "entry \(i) announces \(len(msg)) bytes but has no \"extra\"")
            }
        }
        return out
    }

    static func isPages(_ file: String) -> Bool {
        ImageKind.parse(fileName: (file as NSString).lastPathComponent)?.kind == .pages
    }

    static func pagesSize(_ file: String) throws -> Int {
        var st = stat()
        guard stat(file, &st) == 0 else { throw errno == ENOENT ? ImageError.missing(file: file) : ImageError.io(file: file, errno: errno, what: "stat") }
        return Int(st.st_size)
    }

    static func appendEntry(_ out: inout [UInt8], _ msg: any SwiftProtobuf.Message) throws {
        let bytes: [UInt8] = try msg.serializedBytes()
        ImageCodec.appendU32(&out, UInt32(bytes.count))
        out.append(contentsOf: bytes)
    }

    /// Magic and entry count, without JSON.
    public static func info(file: String) throws -> (magic: String, entries: Int, bytes: Int) {
        if isPages(file) { let n = try pagesSize(file); return (ImageKind.pages.criuName, n / imagePageSize, n) }
        return try info(bytes: try ImageDirectory.readFile(file), file: file)
    }

    /// `info` on bytes already read: every entry is decoded and checked, nothing is kept.
    public static func info(bytes: [UInt8], file: String) throws -> (magic: String, entries: Int, bytes: Int) {
        let kind = try kind(of: bytes, file: file)
        guard let entryType = kind.entryType else { return (kind.criuName, 0, bytes.count) }
        var r = ImageCodec.Reader(file: file, bytes: bytes)
        try r.readHeader(kind)
        var n = 0
        if let h = kind.headType { _ = try r.next(dynamic: h); n += 1 }
        while !r.atEnd {
            let e = try r.next(dynamic: entryType)
            if let len = kind.payloadLength { _ = try r.raw(len(e)) } else if kind.hasRawTail { _ = try r.raw(bytes.count - r.offset) } else { _ = try IpcImages.payload(kind, e, &r) }
            n += 1
        }
        return (kind.criuName, n, bytes.count)
    }

    public static func render(_ obj: Any, pretty: Bool) throws -> String {
        var opts: JSONSerialization.WritingOptions = [.sortedKeys, .withoutEscapingSlashes]
        if pretty { opts.insert(.prettyPrinted) }
        return String(decoding: try JSONSerialization.data(withJSONObject: obj, options: opts), as: UTF8.self)
    }
}
