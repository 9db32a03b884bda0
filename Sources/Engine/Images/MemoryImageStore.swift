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
    /// `memfd`: the image's bytes will mostly come spliced from a pipe (`Writer.splice`).
    public func writer(_ name: String, memfd: Bool = false) throws -> Writer {
        Writer(store: self, name: name, region: memfd ? try Region(memfdFor: location + "/" + name) : Region())
    }

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

    /// One image's bytes: a mapping that grows by mremap (page tables move, bytes are not
    /// copied). Anonymous memory, or a memfd for pages spliced from a stream's pipe: those land
    /// in page-cache pages with one copy, where an anonymous page is zeroed at its first touch
    /// and then overwritten. The memfd is closed once the image is complete (the mapping keeps it).
    final class Region: @unchecked Sendable {
        var base: UnsafeMutableRawPointer?
        var capacity = 0
        var size = 0
        private(set) var fd: Int32 = -1
        /// The memfd's length: the mapping reads as SIGBUS past it.
        private var fileSize = 0

        init() {}

        init(memfdFor file: String) throws {
            fd = Int32(ck_syscall6(SyscallNumber.memfdCreate.rawValue, Int(bitPattern: UnsafeRawPointer(("cryo-stream-image" as StaticString).utf8Start)), 1 /* MFD_CLOEXEC */, 0, 0, 0, 0))
            guard fd >= 0 else { throw ImageError.io(file: file, errno: errno, what: "memfd_create") }
        }

        deinit { if let base { munmap(base, capacity) }; closeFile() }

        func closeFile() { if fd >= 0 { close(fd); fd = -1 } }

        /// A mapping of at least `size + n` bytes.
        private func room(_ n: Int, file: String) throws -> UnsafeMutableRawPointer {
            if size + n > capacity {
                var want = max(capacity * 2, 64 << 10)
                while want < size + n { want *= 2 }
                let p: Int
                if let base {
                    p = ck_syscall6(SyscallNumber.mremap.rawValue, Int(bitPattern: base), capacity, want, 1 /* MREMAP_MAYMOVE */, 0, 0)
                } else {
                    let m = fd >= 0 ? mmap(nil, want, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
                        : mmap(nil, want, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
                    p = m == MAP_FAILED ? -1 : Int(bitPattern: m)
                }
                guard p != -1 else { throw ImageError.io(file: file, errno: errno, what: "map \(want) bytes of memory for an image") }
                base = UnsafeMutableRawPointer(bitPattern: p)
                capacity = want
            }
            return base! + size
        }

        /// Room for `n` more bytes at `base + size`, writable through the mapping.
        func reserve(_ n: Int, file: String) throws -> UnsafeMutableRawPointer {
            let p = try room(n, file: file)
            if fd >= 0 && size + n > fileSize {
                guard ftruncate(fd, off_t(size + n)) == 0 else { throw ImageError.io(file: file, errno: errno, what: "grow the memory file of an image") }
                fileSize = size + n
            }
            return p
        }

        /// Up to `n` bytes from pipe `from` spliced in at `base + size`; fewer only when the
        /// pipe's writer closed. Not counted in until `advance`.
        func splice(from pipe: Int32, _ n: Int, file: String) throws -> (at: UnsafeMutableRawPointer, got: Int) {
            guard fd >= 0 else { throw ImageError.io(file: file, errno: EBADF, what: "splice into anonymous memory") }
            let p = try room(n, file: file)
            let r = Sys.spliceAll(from: pipe, to: fd, at: size, count: n, flags: 1 /* SPLICE_F_MOVE */)
            if r.errno != 0 { throw ImageError.io(file: file, errno: r.errno, what: "splice from the stream") }
            let got = r.moved
            fileSize = max(fileSize, size + got)
            return (p, got)
        }
    }

    public final class Writer: ImageWriter {
        let store: MemoryImageStore
        let name: String
        var region: Region?
        init(store: MemoryImageStore, name: String, region: Region = Region()) { self.store = store; self.name = name; self.region = region }

        var file: String { store.location + "/" + name }

        /// Room for `n` bytes after what was written; `advance` counts them in.
        public func reserve(_ n: Int) throws -> UnsafeMutableRawPointer {
            guard let region else { throw ImageError.io(file: file, errno: EBADF, what: "write after finish") }
            return try region.reserve(n, file: file)
        }

        public func advance(_ n: Int) { region?.size += n }

        /// Whether `splice` can take this image's bytes (a memfd-backed image).
        public var splices: Bool { (region?.fd ?? -1) >= 0 }

        /// Up to `n` bytes spliced from `pipe` to where `reserve` would put them; `advance`
        /// counts them in. Fewer only when the pipe's writer closed.
        public func splice(from pipe: Int32, _ n: Int) throws -> (at: UnsafeMutableRawPointer, got: Int) {
            guard let region else { throw ImageError.io(file: file, errno: EBADF, what: "write after finish") }
            return try region.splice(from: pipe, n, file: file)
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            guard bytes.count > 0 else { return }
            let p = try reserve(bytes.count)
            memcpy(p, bytes.baseAddress!, bytes.count)
            advance(bytes.count)
        }

        public var size: Int { region?.size ?? 0 }

        public func finish() throws {
            guard let region else { return }
            region.closeFile()
            store.publish(name, region)
            self.region = nil
        }

        public func abort() { region = nil }
    }
}
