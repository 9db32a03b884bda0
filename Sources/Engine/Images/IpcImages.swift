import Foundation
import SwiftProtobuf

/// CRIU's SysV IPC images, whose entries carry raw bytes laid out as CRIU (and crit) read
/// them: ipcns-shm (the segment's bytes, padded to 4), ipcns-sem (u16 values, padded to 8),
/// ipcns-msg (per message: a length-prefixed IpcMsg, then its text padded to 8).
public enum IpcImages {
    public struct Segment { public var entry: Img_IpcShmEntry; public var data: [UInt8] }
    public struct SemSet { public var entry: Img_IpcSemEntry; public var values: [UInt16] }
    public struct Message { public var type: UInt64; public var text: [UInt8] }
    public struct Queue { public var entry: Img_IpcMsgEntry; public var messages: [Message] }

    static func pad(_ out: inout [UInt8], _ n: Int, to a: Int) {
        let r = (n + a - 1) / a * a
        out.append(contentsOf: [UInt8](repeating: 0, count: r - n))
    }
    static func padded(_ n: Int, _ a: Int) -> Int { (n + a - 1) / a * a }

    public static func writeShm(_ segs: [Segment], id: Int, images: ImageDirectory) throws {
        var out = ImageCodec.header(.ipcnsShm)
        for s in segs {
            try ImageCodec.appendEntry(&out, s.entry)
            out.append(contentsOf: s.data)
            pad(&out, s.data.count, to: 4)
        }
        try images.writeBytes(images.filePath(.ipcnsShm, id), out)
    }

    public static func readShm(id: Int, images: ImageDirectory) throws -> [Segment] {
        var r = try images.reader(.ipcnsShm, id)
        var out: [Segment] = []
        while !r.atEnd {
            let e = try r.next(Img_IpcShmEntry.self)
            guard !e.inPagemaps else {
                throw ImageError.inconsistent(file: r.file, offset: r.offset, reason: "shm id \(e.desc.id): contents in pagemap-shmem images are not read by cryo")
            }
            let n = Int(e.size)
            let data = try r.raw(n)
            _ = try r.raw(padded(n, 4) - n)
            out.append(Segment(entry: e, data: data))
        }
        return out
    }

    public static func writeSem(_ sets: [SemSet], id: Int, images: ImageDirectory) throws {
        var out = ImageCodec.header(.ipcnsSem)
        for s in sets {
            try ImageCodec.appendEntry(&out, s.entry)
            for v in s.values { out.append(UInt8(v & 0xff)); out.append(UInt8(v >> 8)) }
            pad(&out, 2 * s.values.count, to: 8)
        }
        try images.writeBytes(images.filePath(.ipcnsSem, id), out)
    }

    public static func readSem(id: Int, images: ImageDirectory) throws -> [SemSet] {
        var r = try images.reader(.ipcnsSem, id)
        var out: [SemSet] = []
        while !r.atEnd {
            let e = try r.next(Img_IpcSemEntry.self)
            let n = 2 * Int(e.nsems)
            let b = try r.raw(n)
            _ = try r.raw(padded(n, 8) - n)
            out.append(SemSet(entry: e, values: stride(from: 0, to: n, by: 2).map { UInt16(b[$0]) | UInt16(b[$0 + 1]) << 8 }))
        }
        return out
    }

    public static func writeMsg(_ queues: [Queue], id: Int, images: ImageDirectory) throws {
        var out = ImageCodec.header(.ipcnsMsg)
        for q in queues {
            try ImageCodec.appendEntry(&out, q.entry)
            for m in q.messages {
                var h = Img_IpcMsg()
                h.mtype = m.type
                h.msize = UInt32(m.text.count)
                try ImageCodec.appendEntry(&out, h)
                out.append(contentsOf: m.text)
                pad(&out, m.text.count, to: 8)
            }
        }
        try images.writeBytes(images.filePath(.ipcnsMsg, id), out)
    }

    public static func readMsg(id: Int, images: ImageDirectory) throws -> [Queue] {
        var r = try images.reader(.ipcnsMsg, id)
        var out: [Queue] = []
        while !r.atEnd {
            let e = try r.next(Img_IpcMsgEntry.self)
            var q = Queue(entry: e, messages: [])
            for _ in 0..<e.qnum {
                let h = try r.next(Img_IpcMsg.self)
                let n = Int(h.msize)
                q.messages.append(Message(type: h.mtype, text: try r.raw(n)))
                _ = try r.raw(padded(n, 8) - n)
            }
            out.append(q)
        }
        return out
    }

    /// The bytes after one entry of `kind` (nil: the kind has no such payload): what a
    /// generic reader skips, or shows as crit's "extra".
    static func payload(_ kind: ImageKind, _ e: any SwiftProtobuf.Message, _ r: inout ImageCodec.Reader) throws -> [UInt8]? {
        switch kind {
        case .ipcnsShm:
            let n = Int((e as? Img_IpcShmEntry)?.size ?? 0)
            defer { _ = try? r.raw(padded(n, 4) - n) }
            return try r.raw(n)
        case .ipcnsSem:
            let n = 2 * Int((e as? Img_IpcSemEntry)?.nsems ?? 0)
            return try r.raw(padded(n, 8))
        case .ipcnsMsg:
            var all: [UInt8] = []
            for _ in 0..<((e as? Img_IpcMsgEntry)?.qnum ?? 0) {
                let h = try r.next(Img_IpcMsg.self)
                all += try r.raw(padded(Int(h.msize), 8))
            }
            return all
        default: return nil
        }
    }
}
