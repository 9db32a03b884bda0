import CKernel
import Foundation
import Glibc

/// Images held in memory, one memfd each (so restore can pread pages like from files, and
/// nothing lands on a disk). A parent link resolves against `location`, to a folder.
public final class MemoryImageStore: ImageStore, @unchecked Sendable {
    public let location: String
    private let lock = NSLock()
    private var images: [String: (fd: Int32, size: Int)] = [:]
    private var parentLink: String?

    public init(location: String) { self.location = location }

    deinit { for i in images.values { close(i.fd) } }

    public var bytes: Int { lock.lock(); defer { lock.unlock() }; return images.values.reduce(0) { $0 + $1.size } }

    public func names() throws -> [String] { lock.lock(); defer { lock.unlock() }; return Array(images.keys) }

    public func exists(_ name: String) -> Bool { lock.lock(); defer { lock.unlock() }; return images[name] != nil }

    func entry(_ name: String) throws -> (fd: Int32, size: Int) {
        lock.lock(); defer { lock.unlock() }
        guard let e = images[name] else { throw ImageError.missing(file: location + "/" + name) }
        return e
    }

    public func read(_ name: String) throws -> [UInt8] {
        let (fd, size) = try entry(name)
        let file = location + "/" + name
        guard size <= ImageCodec.maxImageSize else { throw ImageError.tooLarge(file: file, size: size, limit: ImageCodec.maxImageSize) }
        var buf = [UInt8](repeating: 0, count: size)
        var off = 0
        while off < size {
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + off, size - off, off_t(off)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw ImageError.ioAt(file: file, offset: off, errno: n < 0 ? errno : EIO, what: "read") }
            off += n
        }
        return buf
    }

    public func open(_ name: String) throws -> (fd: Int32, size: Int) {
        let (fd, size) = try entry(name)
        let d = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        guard d >= 0 else { throw ImageError.io(file: location + "/" + name, errno: errno, what: "dup") }
        return (d, size)
    }

    public func create(_ name: String) throws -> ImageWriter {
        let fd = Int32(name.withCString { ck_syscall6(SyscallNumber.memfdCreate.rawValue, Int(bitPattern: $0), 1 /* MFD_CLOEXEC */, 0, 0, 0, 0) })
        guard fd >= 0 else { throw ImageError.io(file: location + "/" + name, errno: errno, what: "memfd_create") }
        return Writer(store: self, name: name, fd: fd)
    }

    func publish(_ name: String, fd: Int32, size: Int) {
        lock.lock(); defer { lock.unlock() }
        if let old = images.updateValue((fd, size), forKey: name) { close(old.fd) }
    }

    public func parent() throws -> ImageStore? {
        lock.lock(); let link = parentLink; lock.unlock()
        return try link.map { try LocalImageStore.folder($0, parentOf: location) }
    }

    public func setParent(_ target: String?) throws { lock.lock(); parentLink = target; lock.unlock() }

    public func commit() throws {}

    public func discard() {
        lock.lock(); defer { lock.unlock() }
        for i in images.values { close(i.fd) }
        images = [:]
    }

    final class Writer: ImageWriter {
        let store: MemoryImageStore
        let name: String
        var fd: Int32
        var size = 0
        init(store: MemoryImageStore, name: String, fd: Int32) { self.store = store; self.name = name; self.fd = fd }
        deinit { abort() }

        func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard fd >= 0 else { throw ImageError.io(file: name, errno: EBADF, what: "write after finish") }
            var done = 0
            while done < bytes.count {
                let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { throw ImageError.ioAt(file: store.location + "/" + name, offset: size + done, errno: n < 0 ? errno : ENOSPC, what: "write to memory") }
                done += n
            }
            size += done
        }

        func finish() throws {
            guard fd >= 0 else { return }
            store.publish(name, fd: fd, size: size)
            fd = -1
        }

        func abort() {
            if fd >= 0 { close(fd); fd = -1 }
        }
    }
}
