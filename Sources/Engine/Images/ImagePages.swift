import Glibc

/// Size of a page in pagemap and pages images (CRIU's images are in 4 KiB pages on x86_64).
public let imagePageSize: Int = 4096

/// Writes a raw pages-N.img. Bytes go straight from the caller's buffer to the file with
/// pwrite, so dumping GiBs costs no copies. The file appears under its real name only on
/// `finish()`; an abandoned writer leaves nothing behind.
public final class PagesWriter: SplicingImageWriter {
    public let file: String
    let tmp: String
    private var fd: Int32
    /// Bytes written so far, which is also where the next write goes.
    public private(set) var offset: Int = 0

    init(file: String) throws {
        self.file = file
        tmp = file + ".tmp"
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        if fd < 0 { throw ImageError.io(file: tmp, errno: errno, what: "create") }
    }

    deinit { abort() }

    /// Appends `bytes` (any length; callers normally pass whole pages).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw ImageError.io(file: file, errno: EBADF, what: "write after finish") }
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, base + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError.ioAt(file: tmp, offset: offset + done, errno: errno, what: "write")
            }
            // A zero-byte write on a regular file means no progress is possible (disk full).
            if n == 0 { throw ImageError.ioAt(file: tmp, offset: offset + done, errno: ENOSPC, what: "write") }
            done += n
        }
        offset += done
    }

    /// Appends `count` bytes waiting in `pipe`: splice copies them from the task's pages into
    /// the file, once (process_vm_readv then pwrite copied twice).
    public func splice(from pipe: Int32, count: Int) throws {
        guard fd >= 0 else { throw ImageError.io(file: file, errno: EBADF, what: "write after finish") }
        let r = Sys.spliceAll(from: pipe, to: fd, at: offset, count: count, flags: 0)
        // A filesystem without splice: read out and written.
        if r.moved == 0 && r.errno == EINVAL { return try PipeBytes.read(pipe, count: count) { try write($0) } }
        guard r.moved == count else { throw ImageError.ioAt(file: tmp, offset: offset + r.moved, errno: r.errno != 0 ? r.errno : ENOSPC, what: "splice into") }
        offset += count
    }

    /// Closes the file and gives it its final name.
    public func finish() throws {
        guard fd >= 0 else { return }
        let closed = close(fd)
        let e = errno
        fd = -1
        guard closed == 0 else { unlink(tmp); throw ImageError.io(file: tmp, errno: e, what: "close") }
        guard rename(tmp, file) == 0 else { let e = errno; unlink(tmp); throw ImageError.io(file: file, errno: e, what: "rename") }
    }

    /// Drops what was written.
    public func abort() {
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
        unlink(tmp)
    }
}

/// Reads byte ranges of a raw pages-N.img with pread, into the caller's memory.
public final class PagesReader {
    public let file: String
    public let size: Int
    private var fd: Int32

    init(file: String) throws {
        self.file = file
        fd = open(file, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw errno == ENOENT ? ImageError.missing(file: file) : ImageError.io(file: file, errno: errno, what: "open") }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = errno; Glibc.close(fd); throw ImageError.io(file: file, errno: e, what: "stat") }
        size = Int(st.st_size)
    }

    /// Over an fd already open (it becomes the reader's); `file` names it in errors.
    public init(fd: Int32, size: Int, file: String) {
        self.fd = fd; self.size = size; self.file = file
    }

    deinit { close() }

    public func close() {
        if fd >= 0 { _ = Glibc.close(fd); fd = -1 }
    }

    /// Fills `buffer` with the bytes at `offset`. A range past the end is an error, not a
    /// short read: the pagemap promised those bytes.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        let count = buffer.count
        let (end, overflow) = offset.addingReportingOverflow(count)
        guard offset >= 0, !overflow, end <= size else {
            throw ImageError.truncated(file: file, offset: offset, needed: count, available: max(0, size - max(0, offset)))
        }
        guard fd >= 0 else { throw ImageError.io(file: file, errno: EBADF, what: "read after close") }
        guard let base = buffer.baseAddress, count > 0 else { return }
        var done = 0
        while done < count {
            let n = pread(fd, base + done, count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw ImageError.ioAt(file: file, offset: offset + done, errno: errno, what: "read")
            }
            // The file shrank under us.
            if n == 0 { throw ImageError.truncated(file: file, offset: offset + done, needed: count - done, available: 0) }
            done += n
        }
    }

    public func read(offset: Int, count: Int) throws -> [UInt8] {
        guard count >= 0 else { throw ImageError.truncated(file: file, offset: offset, needed: count, available: 0) }
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        return out
    }
}
