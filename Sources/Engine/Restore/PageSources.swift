import CKernel
import Glibc

/// The pages files of a snapshot chain, each opened once, with the runs of one task's memory
/// resolved to the file that holds each (the newest snapshot that has the page). Opened and
/// checked before restore creates anything: a missing or short file in the chain is an error
/// naming it, not a half-built process.
final class PageSources {
    /// Lazy restore takes out what the lazy-pages daemon serves.
    var segments: [PageSegment]
    /// pages file path -> open fd
    private var fds: [String: Int32] = [:]
    /// pages file path -> its bytes, when the store holds them in memory (a stream)
    private var memory: [String: UnsafeRawPointer] = [:]

    init(images: ImageDirectory, pid: Int, lazy: Bool = false) throws {
        let segments = try images.resolvePages(pid: pid)
        var sizes: [String: Int] = [:]
        // One open file per snapshot of the chain: a long chain may need more than the soft limit.
        let files = Set(segments.compactMap { s in s.source.map { $0.directory.filePath(.pages, Int($0.pagesID)) } })
        var lim = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim) == 0, UInt64(files.count) + 64 > UInt64(lim.rlim_cur) {
            lim.rlim_cur = min(lim.rlim_max, rlim_t(files.count + 256))
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &lim)
        }
        do {
            for s in segments {
                if s.fromParentProcess { continue }  // the parent process holds them
                guard let src = s.source else {
                    if lazy { continue }  // served by the lazy-pages daemon, or refused by LazyRegistration
                    throw RestoreError.unsupported("lazy pages at 0x\(String(s.vaddr, radix: 16)) (no lazy-pages server)")
                }
                let file = src.directory.filePath(.pages, Int(src.pagesID))
                if sizes[file] == nil {
                    if let m = src.directory.mappedPages(id: Int(src.pagesID)) {
                        if let b = m.baseAddress { memory[file] = b }
                        sizes[file] = m.count
                    } else {
                        let (fd, size) = try src.directory.openPagesFile(id: Int(src.pagesID))
                        fds[file] = fd
                        sizes[file] = size
                    }
                }
                let (end, overflow) = src.offset.addingReportingOverflow(s.byteCount)
                guard !overflow, end <= sizes[file]! else {
                    throw ImageError.truncated(file: file, offset: src.offset, needed: s.byteCount, available: max(0, sizes[file]! - src.offset))
                }
            }
        } catch {
            for fd in fds.values { close(fd) }
            throw error
        }
        self.segments = segments
    }

    func fd(for s: PageSegment) -> (fd: Int32, file: String)? {
        guard let src = s.source else { return nil }
        let file = src.directory.filePath(.pages, Int(src.pagesID))
        return fds[file].map { ($0, file) }
    }

    /// Where the segment's bytes are when its pages file is in memory.
    func bytes(for s: PageSegment) -> UnsafeRawPointer? {
        guard let src = s.source, let b = memory[src.directory.filePath(.pages, Int(src.pagesID))] else { return nil }
        return b + src.offset
    }

    var bytes: Int { segments.reduce(0) { $0 + $1.byteCount } }

    deinit { for fd in fds.values { close(fd) } }
}
