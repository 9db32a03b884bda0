import CKernel
import Glibc
import Logging

/// `cryo restore --lazy-pages`: the pages LazyPolicy allows are left out of the fill, their
/// VMAs are registered (MISSING) with a userfaultfd made inside each task, and the fds go to
/// `cryo lazy-pages` before the tree resumes.
struct LazyRegistration {
    let log = Logger(label: "restore")
    /// Per process, the pages left to the daemon (parents before children).
    private(set) var runs: [Int32: [LazyRun]] = [:]
    /// The connection to the daemon, open until the tree resumes.
    private var daemon: Int32 = -1

    /// Takes the lazy pages out of each plan's fill. A child's pages shared copy-on-write with
    /// its parent are lazy when the parent's are (the parent's images hold them); otherwise the
    /// child copies them from the parent as usual.
    mutating func split(_ plans: inout [Restorer.Plan]) throws {
        for i in plans.indices where !plans[i].isZombie {
            guard let pages = plans[i].pages else { continue }
            let pid = plans[i].pid
            let eligible = LazyPolicy.lazyRanges(plans[i].mm.vmas, cores: Array(plans[i].cores.values))
            let parentRuns = runs[plans[i].ppid] ?? []
            var keep: [PageSegment] = []
            var lazy: [LazyRun] = []
            for s in pages.segments {
                let whole = PageRun(start: s.vaddr, end: s.vaddr + s.nrPages * pageSize)
                for (piece, inside) in PageRuns.split([whole], by: eligible) {
                    if !inside {
                        guard s.source != nil || s.fromParentProcess else {
                            throw RestoreError.layout(pid: pid, reason: "pages 0x\(String(piece.start, radix: 16))-0x\(String(piece.end, radix: 16)) are lazy in the images but their mapping cannot be restored lazily")
                        }
                        keep.append(s.piece(piece))
                    } else if s.fromParentProcess {
                        var cursor = piece.start
                        for pr in parentRuns where pr.end > piece.start && pr.start < piece.end {
                            let c = pr.clipped(piece.start, piece.end)!
                            if c.start > cursor { keep.append(s.piece(PageRun(start: cursor, end: c.start))) }
                            lazy.append(c)
                            cursor = c.end
                        }
                        if cursor < piece.end { keep.append(s.piece(PageRun(start: cursor, end: piece.end))) }
                    } else {
                        lazy.append(LazyRun(start: piece.start, end: piece.end, originPid: pid, originStart: piece.start))
                    }
                }
            }
            pages.segments = keep
            runs[pid] = lazy
        }
    }

    /// userfaultfds registered over every VMA holding lazy pages, one per process (a thread
    /// group shares its mm). The caller owns the returned fds.
    func register(_ plans: [Restorer.Plan], built: Restorer.Built, transport: FdTransport) throws -> [LazyHandoff.Task] {
        var tasks: [LazyHandoff.Task] = []
        do {
            for p in plans where !p.isZombie {
                let lazy = runs[p.pid] ?? []
                guard !lazy.isEmpty, let t = built.targets[p.pid]?.first else { continue }
                let vmas = p.mm.vmas.filter { v in LazyPolicy.canBeLazy(v) && lazy.contains { $0.start < v.end && $0.end > v.start } }
                // A child's VMA kept from its parent may hold the parent's pages where its own go.
                let inherited = PageRuns.normalize(built.spaces[p.pid]?.inherited.map { PageRun(start: $0.start, end: $0.end) } ?? [])
                for r in PageRuns.intersect(PageRuns.normalize(lazy.map { PageRun(start: $0.start, end: $0.end) }), inherited) {
                    try t.remote.syscall(.madvise, r.start, r.length, UInt64(MADV_DONTNEED))
                }
                let uffd = try makeUffd(t, transport: transport)
                tasks.append(LazyHandoff.Task(pid: p.pid, runs: lazy, uffd: uffd))
                for v in vmas {
                    var reg = ck_uffdio_register(range: ck_uffdio_range(start: v.start, len: v.end - v.start), mode: CK_UFFDIO_REGISTER_MODE_MISSING, ioctls: 0)
                    guard ck_ioctl(uffd, UInt(CK_UFFDIO_REGISTER), &reg) == 0 else {
                        throw LazyPagesError.kernel(pid: p.pid, call: "UFFDIO_REGISTER 0x\(String(v.start, radix: 16))-0x\(String(v.end, radix: 16))", errno: ck_errno())
                    }
                }
                log.debug("pid \(p.pid): \(lazy.reduce(0) { $0 + $1.pages }) lazy pages in \(vmas.count) VMA(s), userfaultfd registered")
            }
        } catch {
            for t in tasks { close(t.uffd) }
            throw error
        }
        return tasks
    }

    /// The task's own userfaultfd (it must belong to the task's mm), copied out with
    /// pidfd_getfd and closed in the task. In a user namespace the syscall is refused
    /// (vm.unprivileged_userfaultfd 0): the task then makes it from /dev/userfaultfd opened here.
    func makeUffd(_ t: RestoreTarget, transport: FdTransport) throws -> Int32 {
        let flags = UInt64(O_CLOEXEC | O_NONBLOCK)
        var inTask: UInt64
        do {
            inTask = try t.remote.syscall(.userfaultfd, flags)
        } catch RemoteError.syscallFailed(_, _, let e) where e == EPERM {
            let dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC)
            guard dev >= 0 else { throw LazyPagesError.kernel(pid: t.pid, call: "userfaultfd (EPERM) and open(/dev/userfaultfd)", errno: errno) }
            defer { close(dev) }
            let devInTask = try transport.send(dev, to: t, what: "/dev/userfaultfd")
            defer { _ = try? t.remote.syscall(.close, UInt64(devInTask)) }
            inTask = try t.remote.syscall(.ioctl, UInt64(devInTask), UInt64(CK_USERFAULTFD_IOC_NEW), flags)
        }
        defer { _ = try? t.remote.syscall(.close, inTask) }
        let pidfd = try Sys.pidfdOpen(t.pid)
        defer { close(pidfd) }
        let fd = try Sys.pidfdGetfd(pidfd: pidfd, fd: Int32(inTask), context: "pid \(t.pid) userfaultfd \(inTask)")
        let features = CK_UFFD_FEATURE_EVENT_FORK | CK_UFFD_FEATURE_EVENT_REMAP | CK_UFFD_FEATURE_EVENT_REMOVE | CK_UFFD_FEATURE_EVENT_UNMAP
        var api = ck_uffdio_api(api: CK_UFFD_API, features: features, ioctls: 0)
        guard ck_ioctl(fd, UInt(CK_UFFDIO_API), &api) == 0 else {
            let e = ck_errno()
            close(fd)
            throw LazyPagesError.kernel(pid: t.pid, call: "UFFDIO_API (fork, remap, remove, unmap events)", errno: e)
        }
        return fd
    }

    /// Hands the fds to the daemon and waits until it holds them all. Ours are closed after.
    /// The socket stays open: closing it (`resumed`) tells the daemon the tree runs, and only
    /// then does it start filling in the background (faults are served at once), so the end
    /// of the restore does not compete with it for the CPU.
    mutating func handOff(_ tasks: [LazyHandoff.Task], socket path: String) throws {
        defer { for t in tasks { close(t.uffd) } }
        if tasks.isEmpty { log.info("no lazy pages: the lazy-pages daemon gets an empty tree") }
        let sock = try LazyHandoff.connect(path: path)
        do { try LazyHandoff.send(tasks, over: sock) } catch { close(sock); throw error }
        daemon = sock
        log.info("\(tasks.count) userfaultfd(s) handed to the lazy-pages daemon at \(path)")
    }

    /// The tree runs (or the restore failed): the daemon may fill everything now.
    mutating func resumed() {
        if daemon >= 0 { close(daemon); daemon = -1 }
    }
}

extension PageSegment {
    /// The part of this segment over `r` (inside it).
    func piece(_ r: PageRun) -> PageSegment {
        let skip = Int(r.start - vaddr)
        let src = source.map { Source(directory: $0.directory, pagesID: $0.pagesID, offset: $0.offset + skip, depth: $0.depth) }
        var s = PageSegment(vaddr: r.start, nrPages: r.pageCount, lazy: lazy, source: src)
        s.fromParentProcess = fromParentProcess
        return s
    }
}
