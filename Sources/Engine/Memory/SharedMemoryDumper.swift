import Glibc

/// Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS, shown as "/dev/zero (deleted)"): one
/// shmem object, possibly mapped by several processes of the tree. Its pages are dumped once,
/// from the object itself, into pagemap-shmem-ID.img (vaddr = offset in the object), so pages
/// faulted in by any user are kept, and no process's pages hold them twice. ID is the inode.
final class SharedMemoryDumper: @unchecked Sendable {
    /// Pages ids of shmem objects start here: above any pid and above memfds' (MemFd).
    static let pagesIDBase: UInt32 = 0x6000_0000
    private struct Object { var source: String; var extent: UInt64; var pid: Int32 }
    private var objects: [UInt64: Object] = [:]
    private var order: [UInt64] = []
    /// SysV shm segments the tree has attached (their bytes are the IPC namespace's).
    let sysv = SysVShmAttachments()

    static func isSharedAnonymous(_ m: ProcMapping) -> Bool {
        m.shared && m.inode != 0 && m.path == "/dev/zero (deleted)"
    }

    /// Notes one mapping of the object; returns its id (the shmid of the VMA).
    func register(_ m: ProcMapping, pid: Int32) -> UInt64 {
        let end = m.offset + m.size
        if var o = objects[m.inode] {
            if end > o.extent { o.extent = end; o.source = source(m, pid); o.pid = pid }
            objects[m.inode] = o
        } else {
            objects[m.inode] = Object(source: source(m, pid), extent: end, pid: pid)
            order.append(m.inode)
        }
        return m.inode
    }

    private func source(_ m: ProcMapping, _ pid: Int32) -> String {
        "/proc/\(pid)/map_files/\(String(m.start, radix: 16))-\(String(m.end, radix: 16))"
    }

    /// Writes every object's pages (the tree is still frozen). Returns the bytes written.
    @discardableResult
    func writeAll(images: ImageDirectory, pages: PageTransport) throws -> UInt64 {
        try sysv.verify()
        var total: UInt64 = 0
        for (i, id) in order.enumerated() {
            let o = objects[id]!
            let fd = open(o.source, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                throw DumpError.unsupported(pid: o.pid, what: "shared memory \(id): cannot open \(o.source) (\(String(cString: strerror(errno))))")
            }
            defer { close(fd) }
            let pagesID = SharedMemoryDumper.pagesIDBase + UInt32(i)
            guard !images.exists(.shmemPagemap, Int(id)) else {
                throw DumpError.unsupported(pid: o.pid, what: "shared memory \(id): its pagemap id is taken by a memfd's")
            }
            let w = try pages.open(.shmemPagemap, id: Int(id), pagesID: pagesID)
            var off = 0
            var buf = [UInt8](repeating: 0, count: 1 << 20)
            do {
                let seekData: Int32 = 3, seekHole: Int32 = 4  // SEEK_DATA, SEEK_HOLE
                while UInt64(off) < o.extent {
                    let data = lseek(fd, off, seekData)
                    if data < 0 || UInt64(data) >= o.extent { break }
                    var hole = lseek(fd, data, seekHole)
                    if hole < 0 || UInt64(hole) > o.extent { hole = Int(o.extent) }
                    let start = data & ~4095, end = (hole + 4095) & ~4095
                    try w.add(Img_PagemapEntry(vaddr: UInt64(start), nrPages: UInt32((end - start) / 4096), flags: [.present]))
                    var at = start
                    while at < end {
                        let n = min(buf.count, end - at)
                        let got = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, n, off_t(at)) }
                        if got < 0 && errno == EINTR { continue }
                        guard got == n else {
                            throw DumpError.unsupported(pid: o.pid, what: "shared memory \(id): short read at +\(at) (\(got) of \(n))")
                        }
                        try buf.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                        at += n
                    }
                    total += UInt64(end - start)
                    off = end
                }
                try w.finish()
            } catch { w.abort(); throw error }
        }
        return total
    }
}
