import Foundation
import Glibc

/// Where the images of one checkpoint live: the one seam between dump/restore logic and
/// where image bytes go. Dump and restore only see `ImageDirectory`, which does the typed
/// coding and hands whole named images (`core-42.img`, `pages-1.img`...) to its store.
/// `LocalImageStore` is the images folder; a stream or an image cache is another store.
///
/// Contract:
/// - Names are plain file names of one folder (no `/`, no `..`, no NUL).
/// - An image exists under its name only once its writer finished; until then readers and
///   `names()` do not see it.
/// - Writers of different images may be open at once, on different threads (a dump copies
///   pages in the background while it writes the next process's images). A store must be
///   safe for that; one writer is used by one thread at a time.
/// - `commit()` closes a finished dump (after inventory.img); `discard()` a failed one.
public protocol ImageStore: AnyObject, Sendable {
    /// The folder this store stands for: errors name images as `location/NAME`, and a
    /// relative parent link resolves against it.
    var location: String { get }
    /// Names of the finished images (any order).
    func names() throws -> [String]
    func exists(_ name: String) -> Bool
    /// A whole image; `ImageError.missing` when absent, `.tooLarge` above ImageCodec.maxImageSize.
    func read(_ name: String) throws -> [UInt8]
    /// An image for random reads (pages, ghost files): a file descriptor the caller closes,
    /// and the image's size. A store without files may hand out a memfd.
    func open(_ name: String) throws -> (fd: Int32, size: Int)
    /// The image's bytes where they already are in this process's memory (a stream staged
    /// them there), for readers that can use them in place; nil when the store has files.
    func mapped(_ name: String) -> UnsafeRawBufferPointer?
    /// A new image, written front to back; it appears under `name` when the writer finishes.
    func create(_ name: String) throws -> ImageWriter
    /// The previous snapshot of an incremental chain, or nil when there is none.
    func parent() throws -> ImageStore?
    /// Links the previous snapshot (`target` relative to `location`, or absolute); nil unlinks.
    func setParent(_ target: String?) throws
    /// Every image of a dump is written (inventory.img last): the checkpoint is complete.
    func commit() throws
    /// The dump failed: what it wrote must not look like a finished checkpoint.
    func discard()
}

/// One image being written. Bytes go out in order; `finish` publishes the image, `abort`
/// drops it (calling it after `finish` does nothing).
public protocol ImageWriter: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws
    func finish() throws
    func abort()
}

extension ImageWriter {
    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
}

/// A writer that takes bytes straight from a pipe (splice): pages a frozen task vmspliced there
/// reach the image without a copy in cryo (Memory/SplicedPages.swift).
public protocol SplicingImageWriter: ImageWriter {
    /// Appends the next `count` bytes waiting in `pipe`, as `write` would.
    func splice(from pipe: Int32, count: Int) throws
}

/// A store whose writers splice. Spliced bytes may still refer to the task's own pages after
/// the splice (a stream's pipe, a socket's queue), so the tree may run on after the dump only
/// when the store has copied them where it keeps them before `commit()` returns.
public protocol SplicingImageStore: ImageStore {
    var storesBeforeCommit: Bool { get }
}

/// Reading a known number of bytes out of a pipe.
public enum PipeBytes {
    /// Reads exactly `count` bytes of `pipe` into `buf`.
    public static func read(_ pipe: Int32, into buf: UnsafeMutableRawPointer, count: Int) throws {
        var got = 0
        while got < count {
            let r = Glibc.read(pipe, buf + got, count - got)
            if r < 0 && errno == EINTR { continue }
            guard r > 0 else { throw ImageError.io(file: "pipe", errno: r < 0 ? errno : EPIPE, what: "read \(count - got) more of \(count) bytes from") }
            got += r
        }
    }

    /// `count` bytes of `pipe` handed to `body` in pieces of at most 1 MiB.
    public static func read(_ pipe: Int32, count: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let size = min(count, 1 << 20)
        guard size > 0 else { return }
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
        defer { buf.deallocate() }
        var left = count
        while left > 0 {
            let n = min(left, size)
            try read(pipe, into: buf, count: n)
            try body(UnsafeRawBufferPointer(start: buf, count: n))
            left -= n
        }
    }
}

extension ImageStore {
    public func mapped(_ name: String) -> UnsafeRawBufferPointer? { nil }

    /// A whole image in one go.
    public func write(_ name: String, _ bytes: [UInt8]) throws {
        let w = try create(name)
        do {
            try w.write(bytes)
            try w.finish()
        } catch { w.abort(); throw error }
    }
}

/// The images folder: one file per image, written to NAME.tmp and renamed when finished,
/// the parent link a `parent` symlink.
public final class LocalImageStore: SplicingImageStore {
    public let location: String
    /// Files: spliced pages are copied into them by the splice itself.
    public var storesBeforeCommit: Bool { true }

    /// Opens `path`; with `create`, makes it (and missing parents) first.
    public init(path: String, create: Bool = false) throws {
        if create {
            do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
                throw ImageError.io(file: path, errno: errno, what: "create images directory")
            }
        }
        var st = stat()
        guard stat(path, &st) == 0 else { throw ImageError.io(file: path, errno: errno, what: "open images directory") }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw ImageError.io(file: path, errno: ENOTDIR, what: "open images directory") }
        location = path
    }

    func file(_ name: String) -> String { location + "/" + name }

    public func names() throws -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: location).filter { !$0.hasSuffix(".tmp") } } catch {
            throw ImageError.io(file: location, errno: errno == 0 ? EIO : errno, what: "list images directory")
        }
    }

    public func exists(_ name: String) -> Bool { access(file(name), F_OK) == 0 }

    public func read(_ name: String) throws -> [UInt8] { try ImageDirectory.readFile(file(name)) }

    public func open(_ name: String) throws -> (fd: Int32, size: Int) {
        let f = file(name)
        let fd = Glibc.open(f, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw errno == ENOENT ? ImageError.missing(file: f) : ImageError.io(file: f, errno: errno, what: "open") }
        var st = stat()
        guard fstat(fd, &st) == 0 else { let e = errno; close(fd); throw ImageError.io(file: f, errno: e, what: "stat") }
        return (fd, Int(st.st_size))
    }

    public func create(_ name: String) throws -> ImageWriter { try PagesWriter(file: file(name)) }

    public func parent() throws -> ImageStore? {
        let link = file("parent")
        var st = stat()
        guard lstat(link, &st) == 0 else { return nil }
        guard st.st_mode & S_IFMT == S_IFLNK else { return try Self.folder(link, parentOf: location) }
        guard let t = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else {
            throw ImageError.chain(dir: location, reason: "cannot read the parent link")
        }
        return try Self.folder(t, parentOf: location)
    }

    /// The images folder a parent link names, relative to `location` unless absolute.
    public static func folder(_ target: String, parentOf location: String) throws -> LocalImageStore {
        // Resolved, so errors name ".../snap1/pages-1.img", not ".../snap3/../snap2/../snap1/...".
        let path = ImageDirectory.canonical(target.hasPrefix("/") ? target : location + "/" + target)
        do { return try LocalImageStore(path: path) } catch {
            throw ImageError.chain(dir: location, reason: "parent \(path) is not an images directory: \(error)")
        }
    }

    public func setParent(_ target: String?) throws {
        let link = file("parent")
        unlink(link)
        guard let target else { return }
        guard symlink(target, link) == 0 else { throw ImageError.io(file: link, errno: errno, what: "symlink") }
    }

    /// The inventory, written last, is what marks a folder finished.
    public func commit() throws {}

    /// Image files only: the folder may hold other things (logs).
    public func discard() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: location)) ?? []
        // tmpfs-dev-N.tar.gz: a mount's contents (MountTree), CRIU's name.
        for n in names where n.hasSuffix(".img") || n.hasSuffix(".img.tmp") || (n.hasPrefix("tmpfs-dev-") && n.hasSuffix(".tar.gz")) { unlink(file(n)) }
    }
}
