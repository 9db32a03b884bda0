import CKernel
import Glibc
import Logging

extension PageScanner {
    /// Raw PAGEMAP_SCAN over [start, end), looping on walk_end until the range is done.
    func regions(start: UInt64, end: UInt64, flags: UInt64 = 0, required: UInt64, anyOf: UInt64 = 0,
                 inverted: UInt64 = 0, returned: UInt64) throws -> [PageRun] {
        var out: [PageRun] = []
        var vec = [ck_page_region](repeating: ck_page_region(), count: 512)
        var cursor = start
        while cursor < end {
            var arg = ck_pm_scan_arg()
            arg.size = UInt64(MemoryLayout<ck_pm_scan_arg>.size)
            arg.flags = flags
            arg.start = cursor
            arg.end = end
            arg.vec_len = UInt64(vec.count)
            arg.category_inverted = inverted
            arg.category_mask = required
            arg.category_anyof_mask = anyOf
            arg.return_mask = returned
            let n = vec.withUnsafeMutableBufferPointer { vp -> Int32 in
                arg.vec = UInt64(UInt(bitPattern: vp.baseAddress))
                return ck_ioctl(fd, UInt(CK_PAGEMAP_SCAN), &arg)
            }
            if n < 0 {
                throw DirtyTrackingError.kernel(pid: pid, call: "ioctl(PAGEMAP_SCAN)", errno: ck_errno(), range: PageRun(start: cursor, end: end))
            }
            for i in 0..<Int(n) {
                let r = PageRun(start: vec[i].start, end: vec[i].end)
                if let last = out.last, last.end == r.start { out[out.count - 1].end = r.end } else { out.append(r) }
            }
            if arg.walk_end <= cursor { break }
            cursor = arg.walk_end
        }
        return out
    }
}

/// Tracking with userfaultfd write-protect in async mode: a write to a protected page is
/// resolved by the kernel at once (no fault handler runs) and the page loses its uffd-wp bit,
/// which PAGEMAP_SCAN reports as PAGE_IS_WRITTEN and re-protects in the same call.
///
/// The userfaultfd must belong to the target's mm, so it is created inside the target by an
/// injected syscall, copied out with pidfd_getfd and closed in the target again: between runs
/// the target holds no fd of it. Only the track store keeps it open.
public final class UffdWPTracker: DirtyTracker {
    public let pid: Int32
    public let backend = DirtyTrackingBackend.uffdWriteProtect
    /// Our copy of the target's userfaultfd; -1 until armed the first time.
    public private(set) var uffd: Int32
    private var recorded: [PageRun]
    private let log = Logger(label: "dirty")

    init(pid: Int32, parcel: TrackParcel?) throws {
        self.pid = pid
        uffd = parcel?.fds.first ?? -1
        recorded = parcel.map { PageRuns.normalize($0.armed) } ?? []
        // A parcel may only carry one userfaultfd; extra fds would leak.
        parcel?.fds.dropFirst().forEach { Glibc.close($0) }
    }

    deinit { close() }

    public func close() {
        if uffd >= 0 { Glibc.close(uffd); uffd = -1 }
    }

    /// The ranges of `mappings` the kernel reports as write-protect-async registered (any
    /// uffd), intersected with the ones we armed: a mapping replaced since (munmap + mmap at
    /// the same place, mremap) is not registered any more, whatever our record says.
    func trackedNow(_ mappings: [PageRun], scanner: PageScanner) throws -> [PageRun] {
        guard uffd >= 0 else { return [] }
        var registered: [PageRun] = []
        for m in PageRuns.intersect(PageRuns.normalize(mappings), recorded) {
            registered += try scanner.regions(start: m.start, end: m.end, required: CK_PAGE_IS_WPALLOWED, returned: CK_PAGE_IS_WPALLOWED)
        }
        return PageRuns.normalize(registered)
    }

    public func scan(mappings: [PageRun]) throws -> DirtyScan {
        let scanner = try PageScanner(pid: pid)
        defer { scanner.close() }
        let tracked = try trackedNow(mappings, scanner: scanner)
        var written: [PageRun] = []
        for r in tracked {
            written += try scanner.regions(start: r.start, end: r.end,
                                           flags: CK_PM_SCAN_WP_MATCHING | CK_PM_SCAN_CHECK_WPASYNC,
                                           required: CK_PAGE_IS_WRITTEN, returned: CK_PAGE_IS_WRITTEN)
        }
        recorded = tracked
        if tracked.isEmpty && uffd >= 0 {
            // Nothing survived (the process exec'd, or unmapped all it had): the userfaultfd may
            // belong to an mm that is gone, so arming starts over with a new one.
            close()
        }
        return DirtyScan(tracked: tracked, written: PageRuns.normalize(written))
    }

    public func arm(mappings: [PageRun], remote: Remote) throws {
        if uffd < 0 { uffd = try create(remote: remote) }
        let scanner = try PageScanner(pid: pid)
        defer { scanner.close() }
        let already = try trackedNow(mappings, scanner: scanner)
        var armed = already
        // One registration per mapping: a range may not span VMAs the kernel cannot register together.
        for m in PageRuns.subtract(mappings.sorted { $0.start < $1.start }, already) {
            var reg = ck_uffdio_register(range: ck_uffdio_range(start: m.start, len: m.length), mode: CK_UFFDIO_REGISTER_MODE_WP, ioctls: 0)
            if ck_ioctl(uffd, UInt(CK_UFFDIO_REGISTER), &reg) < 0 {
                // Left unarmed, the range is dumped whole every time: slower, never wrong.
                log.info("pid \(pid): cannot track 0x\(String(m.start, radix: 16))-0x\(String(m.end, radix: 16)): errno \(ck_errno())")
                continue
            }
            var wp = ck_uffdio_writeprotect(range: ck_uffdio_range(start: m.start, len: m.length), mode: 1 /* UFFDIO_WRITEPROTECT_MODE_WP */)
            if ck_ioctl(uffd, UInt(CK_UFFDIO_WRITEPROTECT), &wp) < 0 {
                let e = ck_errno()
                var range = ck_uffdio_range(start: m.start, len: m.length)
                _ = ck_ioctl(uffd, UInt(CK_UFFDIO_UNREGISTER), &range)
                throw DirtyTrackingError.kernel(pid: pid, call: "UFFDIO_WRITEPROTECT", errno: e, range: m)
            }
            armed.append(m)
        }
        recorded = PageRuns.normalize(armed)
    }

    /// userfaultfd() inside the target, then the handshake from here. WP_UNPOPULATED makes
    /// never-touched pages start protected (no fault to populate them); it is optional.
    func create(remote: Remote) throws -> Int32 {
        do {
            return try newUffd(remote: remote, features: CK_UFFD_FEATURE_WP_ASYNC | CK_UFFD_FEATURE_WP_UNPOPULATED)
        } catch DirtyTrackingError.kernel(_, _, let e, _) where e == EINVAL {
            // UFFDIO_API succeeds once per userfaultfd: a refused feature set needs a new one.
            return try newUffd(remote: remote, features: CK_UFFD_FEATURE_WP_ASYNC)
        }
    }

    private func newUffd(remote: Remote, features: UInt64) throws -> Int32 {
        var targetFd: UInt64
        do {
            targetFd = try remote.syscall(.userfaultfd, UInt64(O_CLOEXEC | O_NONBLOCK))
        } catch RemoteError.syscallFailed(_, _, let e) where e == EPERM {
            // Without the privilege the kernel still allows a user-mode-only userfaultfd; async
            // write-protect resolves kernel-mode writes itself, so tracking is the same.
            targetFd = try remote.syscall(.userfaultfd, UInt64(O_CLOEXEC | O_NONBLOCK) | UInt64(CK_UFFD_USER_MODE_ONLY))
        }
        defer { _ = try? remote.syscall(.close, targetFd) }
        let pidfd = try Sys.pidfdOpen(pid)
        defer { Glibc.close(pidfd) }
        let fd = try Sys.pidfdGetfd(pidfd: pidfd, fd: Int32(targetFd), context: "pid \(pid) userfaultfd \(targetFd)")
        var api = ck_uffdio_api(api: CK_UFFD_API, features: features, ioctls: 0)
        if ck_ioctl(fd, UInt(CK_UFFDIO_API), &api) != 0 {
            let e = ck_errno()
            Glibc.close(fd)
            throw DirtyTrackingError.kernel(pid: pid, call: "UFFDIO_API (features 0x\(String(features, radix: 16)))", errno: e, range: nil)
        }
        return fd
    }

    public func parcel(startTime: UInt64) -> TrackParcel {
        TrackParcel(pid: pid, startTime: startTime, backend: backend, fds: uffd >= 0 ? [uffd] : [], armed: recorded)
    }
}
