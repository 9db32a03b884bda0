import CKernel
import Foundation
import Glibc

/// Images held in this process's anonymous memory (the restore side of a stream): nothing
/// lands on a disk, a stream's reader writes each frame straight into place, and the restore
/// fills a task's memory from the bytes where they are (`mapped`) instead of reading them back
/// from a file. (Huge pages were tried: no less CPU than 4 KiB pages for a 1 GiB stream on
/// this kernel, each 2 MiB page is zeroed before the copy overwrites it.) A parent link
/// resolves against `location`, to a folder.
public final class MemoryImageStore: ImageStore, @unchecked Sendable {
    public let location: String
    private let lock = NSLock()
    private var images: [String: Region] = [:]
    private var parentLink: String?

    public init(location: String) { self.location = location }

    public var bytes: Int { lock.lock(); defer { lock.unlock() }; return images.values.reduce(0) { $0 + $1.size } }

    public func names() throws -> [String] { lock.lock(); defer { lock.unlock() }; return Array(images.keys) }

    public func exists(_ name: String) -> Bool { lock.lock(); defer { lock.unlock() }; return images[name] != nil }

    func entry(_ name: String) throws -> Region {
        lock.lock(); defer { lock.unlock() }
        guard let e = images[name] else { throw ImageError.missing(file: location + "/" + name) }
        return e
    }

    public func read(_ name: String) throws -> [UInt8] {
        let r = try entry(name)
        guard r.size <= ImageCodec.maxImageSize else {
            throw ImageError.tooLarge(file: location + "/" + name, size: r.size, limit: ImageCodec.maxImageSize)
        }
        return r.size == 0 ? [] : Array(UnsafeRawBufferPointer(start: r.base, count: r.size))
    }

    public func mapped(_ name: String) -> UnsafeRawBufferPointer? {
        guard let r = try? entry(name) else { return nil }
        return UnsafeRawBufferPointer(start: r.size == 0 ? nil : r.base, count: r.size)
    }

    /// A memfd copy, for readers that need a file (ghost files, shared memory); the pages of
    /// private memory are read in place.
    public func open(_ name: String) throws -> (fd: Int32, size: Int) {
        let r = try entry(name)
        let file = location + "/" + name
        let fd = Int32(name.withCString { ck_syscall6(SyscallNumber.memfdCreate.rawValue, Int(bitPattern: $0), 1 /* MFD_CLOEXEC */, 0, 0, 0, 0) })
        guard fd >= 0 else { throw ImageError.io(file: file, errno: errno, what: "memfd_create") }
        var off = 0
        while off < r.size {
            let n = pwrite(fd, r.base! + off, r.size - off, off_t(off))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { let e = n < 0 ? errno : ENOSPC; close(fd); throw ImageError.ioAt(file: file, offset: off, errno: e, what: "write to memory") }
            off += n
        }
        return (fd, r.size)
    }

    public func create(_ name: String) throws -> ImageWriter { try writer(name) }

    /// The concrete writer, whose `reserve`/`advance` let a reader put bytes in place.
    public func writer(_ name: String) throws -> Writer { Writer(store: self, name: name) }

    func publish(_ name: String, _ region: Region) {
        lock.lock(); defer { lock.unlock() }
        images[name] = region
    }

    public func parent() throws -> ImageStore? {
        lock.lock(); let link = parentLink; lock.unlock()
        return try link.map { try LocalImageStore.folder($0, parentOf: location) }
    }

    public func setParent(_ target: String?) throws { lock.lock(); parentLink = target; lock.unlock() }

    public func commit() throws {}

    /// Unmaps every image: pointers from `mapped` must no longer be used.
    public func discard() {
        lock.lock(); defer { lock.unlock() }
        images = [:]
    }

    /// One image's bytes: an anonymous mapping that grows by mremap (page tables move, bytes
    /// are not copied).
    final class Region: @unchecked Sendable {
        var base: UnsafeMutableRawPointer?
        var capacity = 0
        var size = 0

        deinit { if let base { munmap(base, capacity) } }

        /// Room for `n` more bytes at `base + size`.
        func reserve(_ n: Int, file: String) throws -> UnsafeMutableRawPointer {
            if size + n > capacity {
                var want = max(capacity * 2, 64 << 10)
                while want < size + n { want *= 2 }
                let p: Int
                if let base {
                    p = ck_syscall6(SyscallNumber.mremap.rawValue, Int(bitPattern: base), capacity, want, 1 /* MREMAP_MAYMOVE */, 0, 0)
                } else {
                    let m = mmap(nil, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                    p = m == MAP_FAILED ? -1 : Int(bitPattern: m)
                }
                guard p != -1 else { throw ImageError.io(file: file, errno: errno, what: "map \(want) bytes of memory for an image") }
                base = UnsafeMutableRawPointer(bitPattern: p)
                capacity = want
            }
            return base! + size
        }
    }

    public final class Writer: ImageWriter {
        let store: MemoryImageStore
        let name: String
        var region: Region?
        init(store: MemoryImageStore, name: String) { self.store = store; self.name = name; region = Region() }

        var file: String { store.location + "/" + name }

        /// Room for `n` bytes after what was written; `advance` counts them in.
        public func reserve(_ n: Int) throws -> UnsafeMutableRawPointer {
            guard let region else { throw ImageError.io(file: file, errno: EBADF, what: "write after finish") }
            return try region.reserve(n, file: file)
        }

        public func advance(_ n: Int) { region?.size += n }

        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard bytes.count > 0 else { return }
            let p = try reserve(bytes.count)
            memcpy(p, bytes.baseAddress!, bytes.count)
            advance(bytes.count)
        }

        public var size: Int { region?.size ?? 0 }

        public func finish() throws {
            guard let region else { return }
            store.publish(name, region)
            self.region = nil
        }

        public func abort() { region = nil }
    }
}
