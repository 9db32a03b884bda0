import Glibc

/// Restore side of shared anonymous memory: cryo makes each shmem object itself (an anonymous
/// shared mapping, reopened through /proc/self/map_files so it lives on as an fd), writes its
/// pages into it once, and every task that had it maps the same object at its own address.
/// Made that way, the object reads "/dev/zero (deleted)" in /proc, as it did.
final class SharedMemoryObjects {
    private(set) var fds: [UInt64: Int32] = [:]

    func prepare(_ plans: [Restorer.Plan], images: ImageDirectory) throws {
        var extent: [UInt64: UInt64] = [:]
        for p in plans where !p.isZombie {
            for v in p.mm.vmas where v.status & VmaStatus.anonShared != 0 {
                extent[v.shmid] = max(extent[v.shmid] ?? 0, v.pgoff + (v.end - v.start))
            }
        }
        for (id, size) in extent.sorted(by: { $0.key < $1.key }) {
            let fd = try Self.make(size: size, what: "shared memory \(id)")
            fds[id] = fd
            try fill(id: id, fd: fd, images: images)
        }
    }

    /// A new shmem object of `size` bytes (i_size exactly, though the mapping that makes it
    /// needs a page at least), as cryo's fd.
    static func make(size: UInt64, what: String) throws -> Int32 {
        let span = Int(max(size, 4096) + 4095) & ~4095
        let addr = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        guard let addr, addr != MAP_FAILED else { throw RestoreError.layout(pid: getpid(), reason: "\(what) of \(size) bytes: mmap errno \(errno)") }
        let start = UInt(bitPattern: addr)
        let path = "/proc/self/map_files/\(String(start, radix: 16))-\(String(start + UInt(span), radix: 16))"
        let fd = open(path, O_RDWR | O_CLOEXEC)
        let e = errno
        munmap(addr, span)
        guard fd >= 0 else { throw RestoreError.fileMissing(path: path, errno: e) }
        if UInt64(span) != size && ftruncate(fd, off_t(size)) != 0 {
            let e = errno
            close(fd)
            throw SystemCallError(call: "ftruncate(\(size))", errno: e, context: what)
        }
        return fd
    }

    private func fill(id: UInt64, fd: Int32, images: ImageDirectory) throws {
        guard images.exists(.shmemPagemap, Int(id)) else { return }
        let map = try images.pageMap(pid: Int(id), kind: .shmemPagemap)
        let pages = try images.openPagesFile(id: Int(map.pagesID))
        defer { close(pages.fd) }
        let file = images.filePath(.pages, Int(map.pagesID))
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        var fileOff = 0
        for e in map.entries.map(\.entry) where e.hasData {
            var at = Int(e.vaddr)
            var left = Int(e.nrPages) * 4096
            while left > 0 {
                let n = min(left, buf.count)
                let got = buf.withUnsafeMutableBytes { pread(pages.fd, $0.baseAddress, n, off_t(fileOff)) }
                guard got == n else { throw ImageError.truncated(file: file, offset: fileOff, needed: n, available: max(0, got)) }
                let put = buf.withUnsafeBytes { pwrite(fd, $0.baseAddress, n, off_t(at)) }
                guard put == n else { throw RestoreError.layout(pid: getpid(), reason: "shared memory \(id): write at +\(at) failed (errno \(errno))") }
                fileOff += n; at += n; left -= n
            }
        }
    }

    /// The path a task opens to map object `id`.
    func path(_ id: UInt64) -> String? { fds[id].map { "/proc/\(getpid())/fd/\($0)" } }

    func closeAll() {
        for fd in fds.values { close(fd) }
        fds = [:]
    }
}
