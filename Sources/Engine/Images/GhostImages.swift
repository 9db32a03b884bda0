import Glibc

/// Ghost images: the contents of a file that was deleted while open or mapped, kept the way
/// CRIU keeps them (ghost-file-ID.img: header, one GhostFileEntry without chunks, raw bytes).
extension ImageDirectory {
    /// Writes ghost `id` from `fd` (read from offset 0 to `size`).
    public func writeGhost(id: UInt32, entry: Img_GhostFileEntry, from fd: Int32, size: UInt64, source: String) throws {
        let w = try store.create(ImageKind.ghostFile.fileName(Int(id)))
        do {
            var head = ImageCodec.header(.ghostFile)
            try ImageCodec.appendEntry(&head, entry)
            try w.write(head)
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            var off: UInt64 = 0
            while off < size {
                let want = Int(min(UInt64(buf.count), size - off))
                let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(off)) }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw ImageError.ioAt(file: source, offset: Int(off), errno: errno, what: "read deleted file") }
                if n == 0 { throw ImageError.ioAt(file: source, offset: Int(off), errno: EIO, what: "deleted file shrank while read") }
                try buf.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                off += UInt64(n)
            }
            try w.finish()
        } catch { w.abort(); throw error }
    }

    /// The entry of ghost `id` and where its bytes start.
    public func readGhost(id: UInt32) throws -> (entry: Img_GhostFileEntry, dataOffset: Int) {
        let file = filePath(.ghostFile, Int(id))
        let (fd, size) = try store.open(ImageKind.ghostFile.fileName(Int(id)))
        defer { close(fd) }
        // The entry is small; a head of 64 KiB always holds it (the reader checks the length).
        var head = [UInt8](repeating: 0, count: 64 * 1024)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw ImageError.io(file: file, errno: errno, what: "read") }
        var r = ImageCodec.Reader(file: file, bytes: Array(head.prefix(n)))
        try r.readHeader(.ghostFile)
        let e = try r.next(Img_GhostFileEntry.self)
        if e.hasSize && UInt64(size) - UInt64(r.offset) != e.size {
            throw ImageError.inconsistent(file: file, offset: r.offset, reason: "holds \(UInt64(size) - UInt64(r.offset)) bytes of file data, the entry says \(e.size)")
        }
        return (e, r.offset)
    }

    /// Copies ghost `id`'s bytes into `fd`.
    public func copyGhost(id: UInt32, dataOffset: Int, size: UInt64, to fd: Int32, target: String) throws {
        let file = filePath(.ghostFile, Int(id))
        let src = try store.open(ImageKind.ghostFile.fileName(Int(id))).fd
        defer { close(src) }
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var off: UInt64 = 0
        while off < size {
            let want = Int(min(UInt64(buf.count), size - off))
            let n = buf.withUnsafeMutableBytes { pread(src, $0.baseAddress, want, off_t(UInt64(dataOffset) + off)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw ImageError.ioAt(file: file, offset: dataOffset + Int(off), errno: n < 0 ? errno : EIO, what: "read ghost data") }
            var done = 0
            while done < n {
                let w = buf.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, n - done, off_t(off) + off_t(done)) }
                if w < 0 && errno == EINTR { continue }
                if w <= 0 { throw ImageError.ioAt(file: target, offset: Int(off) + done, errno: w < 0 ? errno : ENOSPC, what: "write ghost file") }
                done += w
            }
            off += UInt64(n)
        }
    }
}
