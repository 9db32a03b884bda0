import Foundation
import Glibc

/// The restore side of a checkpoint stream: reads frames from `fd` into a MemoryImageStore
/// (each payload straight into its image's memory) until the commit frame and the end of
/// the stream. Every header is checked before its payload is used; the first problem is
/// thrown with the byte offset and the image it concerns, and nothing is kept.
public struct StreamReader {
    public let fd: Int32
    /// Where a relative parent link of the stream resolves (the restore's -D, or the cwd).
    public let location: String

    public init(fd: Int32, location: String) {
        self.fd = fd; self.location = location
        StreamFormat.widenPipe(fd)
    }

    /// Opens PATH or takes a decimal fd.
    public static func open(_ source: String, location: String) throws -> StreamReader {
        if let fd = Int32(source), fd >= 0 {
            guard fcntl(fd, F_GETFD) >= 0 else { throw StreamError.io(what: "fd \(fd)", errno: errno) }
            return StreamReader(fd: fd, location: location)
        }
        let fd = Glibc.open(source, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw StreamError.io(what: "open \(source)", errno: errno) }
        return StreamReader(fd: fd, location: location)
    }

    public struct Result {
        public let store: MemoryImageStore
        public let images: Int
        public let imageBytes: UInt64
        public let streamBytes: Int

        /// A stream through a pipe on one host ends when the dump has killed the tree, but its
        /// parent may not have reaped it yet: waits up to `timeout` for the stream's pids to be
        /// free. A pid still taken then is the restore's error to report, by name.
        /// A tree in a pid namespace of its own gets its pids there: nothing to wait for.
        public func waitForPids(timeout: Double) {
            let d = ImageDirectory(store: store)
            guard let tree = try? d.read(.pstree, as: Img_PstreeEntry.self), let root = tree.first else { return }
            if let inv = try? d.readOne(.inventory, as: Img_InventoryEntry.self),
               let ids = try? d.readOne(.ids, id: Int(root.pid), as: Img_TaskKobjIdsEntry.self),
               ids.newNamespaces(comparedTo: inv.rootIds).contains(.pid) { return }
            let deadline = Date().addingTimeInterval(timeout)
            for p in tree.flatMap({ [$0.pid] + $0.threads }) {
                while kill(Int32(bitPattern: p), 0) == 0 || errno == EPERM {
                    if Date() > deadline { return }
                    usleep(2_000)
                }
            }
        }
    }

    public func read() throws -> Result {
        let store = MemoryImageStore(location: location)
        var offset = 0
        /// Images begun and not ended, with their writers.
        var open: [String: (writer: MemoryImageStore.Writer, size: Int)] = [:]
        var done: Set<String> = []
        var bytes: UInt64 = 0
        var payload = [UInt8](repeating: 0, count: StreamFormat.maxStored)
        var sawParent = false
        // A data frame that fails its checksum, when frames go on: a dump that failed after its
        // pages went out by reference (spliced) let the tree run and change them, and its abort
        // frame, which says why, follows.
        var mismatch: StreamError?
        // From a pipe, pages are spliced into memfds (one copy, no zero-fill of fresh memory).
        var st = stat()
        let pipeInput = fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFIFO
        func unfinished() -> String {
            open.isEmpty ? "" : "; unfinished: " + open.sorted { $0.key < $1.key }.map { "\($0.key) (\($0.value.size) bytes)" }.joined(separator: ", ")
        }
        func fill(_ buf: UnsafeMutableRawPointer, _ n: Int, what: String, image: String?) throws {
            var got = 0
            while got < n {
                let r = Glibc.read(fd, buf + got, n - got)
                if r < 0 && errno == EINTR { continue }
                if r < 0 { throw StreamError.io(what: "read at byte \(offset + got)", errno: errno) }
                if r == 0 {
                    throw StreamError.truncated(offset: offset + got, image: image, reason: "ended inside \(what) (\(got) of \(n) bytes)" + unfinished())
                }
                got += r
            }
            offset += n
        }
        do {
            var head = [UInt8](repeating: 0, count: StreamFormat.streamHeaderSize)
            try head.withUnsafeMutableBytes { try fill($0.baseAddress!, $0.count, what: "the stream header", image: nil) }
            let streamFlags = try StreamFormat.parseStreamHeader(head)
            var fixed = [UInt8](repeating: 0, count: StreamFormat.frameHeaderSize)
            while true { do {
                let at = offset
                // A clean end before the commit frame is a dump cut short.
                let first = fixed.withUnsafeMutableBytes { p -> Int in
                    while true { let r = Glibc.read(fd, p.baseAddress!, 1); if r < 0 && errno == EINTR { continue }; return r < 0 ? -Int(errno) : r }
                }
                if first < 0 { throw StreamError.io(what: "read at byte \(at)", errno: Int32(-first)) }
                if first == 0 { throw StreamError.truncated(offset: at, image: nil, reason: "ended before the commit frame" + unfinished()) }
                offset += 1
                try fixed.withUnsafeMutableBytes { try fill($0.baseAddress! + 1, $0.count - 1, what: "a frame header", image: nil) }
                let h = try StreamFormat.decodeFixed(fixed, at: at)
                var nameBytes = [UInt8](repeating: 0, count: h.nameLength)
                if h.nameLength > 0 { try nameBytes.withUnsafeMutableBytes { try fill($0.baseAddress!, $0.count, what: "an image name", image: nil) } }
                var name: String?
                if h.nameLength > 0 {
                    guard let n = StreamFormat.validName(nameBytes) else {
                        let shown = String(decoding: nameBytes, as: UTF8.self).replacingOccurrences(of: "\0", with: "\\0")
                        throw StreamError.corrupt(offset: at, image: nil, reason: "image name \"\(shown)\" refused (a name has no '/', '..' or NUL)")
                    }
                    name = n
                }
                // An uncompressed DATA payload is read straight into its image's place, checked
                // there, and only then counted in: one copy from the stream to the restore.
                var inPlace: UnsafeMutableRawPointer?
                if h.type == .data && h.flags & StreamFormat.frameZstd == 0 {
                    let n = name!
                    guard !done.contains(n) else { throw StreamError.corrupt(offset: at, image: n, reason: "data for an image already complete") }
                    if open[n] == nil { open[n] = (try store.writer(n, memfd: pipeInput && n.hasPrefix(ImageKind.pages.stem + "-")), 0) }
                    let w = open[n]!.writer
                    if w.splices {
                        let (p, got) = try w.splice(from: fd, h.stored)
                        guard got == h.stored else {
                            throw StreamError.truncated(offset: offset + got, image: name, reason: "ended inside a \(h.type) payload (\(got) of \(h.stored) bytes)" + unfinished())
                        }
                        offset += got
                        inPlace = p
                    } else {
                        inPlace = try w.reserve(h.stored)
                        try fill(inPlace!, h.stored, what: "a \(h.type) payload", image: name)
                    }
                } else {
                    try payload.withUnsafeMutableBytes { try fill($0.baseAddress!, h.stored, what: "a \(h.type) payload", image: name) }
                }
                let crc = inPlace.map { StreamFormat.crc(header: fixed, name: nameBytes, payload: UnsafeRawBufferPointer(start: $0, count: h.stored)) }
                    ?? payload.withUnsafeBytes { StreamFormat.crc(header: fixed, name: nameBytes, payload: UnsafeRawBufferPointer(rebasing: $0[0..<h.stored])) }
                guard crc == h.crc else {
                    let e = StreamError.corrupt(offset: at, image: name, reason: "checksum mismatch in a \(h.type) frame (stored 0x\(String(h.crc, radix: 16)), computed 0x\(String(crc, radix: 16)))")
                    guard h.type == .data, mismatch == nil else { throw mismatch ?? e }
                    mismatch = e
                    continue
                }
                if let mismatch, h.type != .abort { if h.type == .data { continue }; throw mismatch }
                switch h.type {
                case .data:
                    let n = name!
                    guard !done.contains(n) else { throw StreamError.corrupt(offset: at, image: n, reason: "data for an image already complete") }
                    if open[n] == nil { open[n] = (try store.writer(n), 0) }
                    let w = open[n]!.writer
                    if inPlace != nil {
                        w.advance(h.raw)
                    } else {
                        guard streamFlags & StreamFormat.flagZstd != 0 else {
                            throw StreamError.corrupt(offset: at, image: n, reason: "compressed frame in a stream whose header says uncompressed")
                        }
                        let dst = try w.reserve(h.raw)
                        let ok = payload.withUnsafeBytes { src in
                            StreamFormat.decompress(UnsafeRawBufferPointer(rebasing: src[0..<h.stored]), into: UnsafeMutableRawBufferPointer(start: dst, count: h.raw))
                        }
                        guard ok else { throw StreamError.corrupt(offset: at, image: n, reason: "compressed payload does not decompress to \(h.raw) bytes") }
                        w.advance(h.raw)
                    }
                    open[n]!.size += h.raw
                case .end:
                    let n = name!
                    guard !done.contains(n) else { throw StreamError.corrupt(offset: at, image: n, reason: "image ended twice") }
                    let size = Int(StreamFormat.get(payload, 0, UInt64.self))
                    let have = open[n]?.size ?? 0
                    guard size == have else { throw StreamError.corrupt(offset: at, image: n, reason: "end frame says \(size) bytes, the stream carried \(have)") }
                    let w = try open[n]?.writer ?? store.writer(n)
                    try w.finish()
                    open[n] = nil
                    done.insert(n)
                    bytes += UInt64(size)
                case .parent:
                    guard !sawParent else { throw StreamError.corrupt(offset: at, image: nil, reason: "a second parent link") }
                    let t = Array(payload[0..<h.raw])
                    guard !t.contains(0), let target = String(validating: t, as: UTF8.self) else {
                        throw StreamError.corrupt(offset: at, image: nil, reason: "parent link is not a path")
                    }
                    sawParent = true
                    try store.setParent(target)
                case .abort:
                    throw StreamError.dumpFailed(offset: at, reason: String(decoding: payload[0..<h.raw], as: UTF8.self))
                case .commit:
                    let count = StreamFormat.get(payload, 0, UInt64.self), total = StreamFormat.get(payload, 8, UInt64.self)
                    guard open.isEmpty else { throw StreamError.corrupt(offset: at, image: nil, reason: "commit frame with images unfinished" + unfinished()) }
                    guard count == UInt64(done.count), total == bytes else {
                        throw StreamError.corrupt(offset: at, image: nil, reason: "commit frame says \(count) images of \(total) bytes, the stream carried \(done.count) of \(bytes)")
                    }
                    // The writer closes the stream after it let the tree go: the end is part of the checkpoint.
                    var one: UInt8 = 0
                    while true {
                        let r = Glibc.read(fd, &one, 1)
                        if r < 0 && errno == EINTR { continue }
                        if r < 0 { throw StreamError.io(what: "read at byte \(offset)", errno: errno) }
                        if r > 0 { throw StreamError.corrupt(offset: offset, image: nil, reason: "bytes after the commit frame") }
                        break
                    }
                    return Result(store: store, images: done.count, imageBytes: bytes, streamBytes: offset)
                }
            } catch let e as StreamError {
                guard let mismatch else { throw e }
                if case .dumpFailed(let o, let r) = e { throw StreamError.dumpFailed(offset: o, reason: r + " (a data frame before it had changed: \(mismatch))") }
                throw mismatch
            } }
        } catch {
            for w in open.values { w.writer.abort() }
            store.discard()
            throw error
        }
    }
}
