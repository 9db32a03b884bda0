/// A bad or unreadable image. Every case names the file and, where it applies, the byte offset.
public enum ImageError: Error, CustomStringConvertible, Equatable, Sendable {
    case io(file: String, errno: Int32, what: String)
    /// An I/O error part-way through a file (pages files are read and written by range).
    case ioAt(file: String, offset: Int, errno: Int32, what: String)
    case missing(file: String)
    case badMagic(file: String, offset: Int, expected: UInt32, found: UInt32)
    case truncated(file: String, offset: Int, needed: Int, available: Int)
    case oversized(file: String, offset: Int, length: UInt32, limit: Int)
    case undecodable(file: String, offset: Int, reason: String)
    case missingRequired(file: String, offset: Int, message: String)
    case inconsistent(file: String, offset: Int, reason: String)
    case chain(dir: String, reason: String)
    /// A metadata image bigger than any cryo writes: refused before it is read into memory.
    case tooLarge(file: String, size: Int, limit: Int)
    /// A bug in cryo: an entry about to be written lacks a required field.
    case incompleteEntry(message: String)
    /// An entry about to be written is over the limit readers enforce.
    case entryTooLarge(message: String, size: Int, limit: Int)

    public var description: String {
        switch self {
        case .io(let f, let e, let what): return "\(f): \(what): \(String(cString: strerror(e)))"
        case .ioAt(let f, let o, let e, let what): return "\(f): \(what) at offset \(o): \(String(cString: strerror(e)))"
        case .missing(let f): return "\(f): image file is missing"
        case .badMagic(let f, let o, let e, let g):
            return "\(f): bad magic at offset \(o): expected 0x\(String(e, radix: 16)), found 0x\(String(g, radix: 16))"
        case .truncated(let f, let o, let n, let a): return "\(f): truncated at offset \(o): need \(n) bytes, \(a) left"
        case .oversized(let f, let o, let l, let lim): return "\(f): entry at offset \(o) claims \(l) bytes (limit \(lim))"
        case .undecodable(let f, let o, let r): return "\(f): entry at offset \(o) does not decode: \(r)"
        case .missingRequired(let f, let o, let m): return "\(f): entry at offset \(o) (\(m)) lacks a required field"
        case .inconsistent(let f, let o, let r): return "\(f): inconsistent at offset \(o): \(r)"
        case .tooLarge(let f, let s, let l): return "\(f): \(s) bytes, more than any image of this kind may hold (\(l))"
        case .chain(let d, let r): return "\(d): bad parent chain: \(r)"
        case .incompleteEntry(let m): return "cannot write \(m): a required field is not set"
        case .entryTooLarge(let m, let s, let l): return "cannot write \(m): \(s) bytes, over the \(l)-byte entry limit"
        }
    }
}

import Glibc
