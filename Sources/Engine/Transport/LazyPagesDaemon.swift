import CKernel
import Foundation
import Glibc
import Logging

/// `cryo lazy-pages`: takes the userfaultfds a `restore --lazy-pages` hands over, serves each
/// fault with UFFDIO_COPY (the faulting page and a few after it), and fills the rest in the
/// background, starting where the task last faulted. It follows what the tasks do to missing
/// memory (fork, mremap, munmap, madvise) and exits once every page is in or its task is gone.
public final class LazyPagesDaemon {
    public struct Stats: Sendable {
        public var tasks = 0
        public var faults = 0
        public var faultPages = 0
        public var backgroundPages = 0
        public var zeroPages = 0
        /// Pages the task had written itself (UFFDIO_COPY: EEXIST); left as they were.
        public var alreadyThere = 0
        /// Pages dropped because the task unmapped, moved away or discarded them.
        public var dropped = 0
        public var forks = 0
        /// Copies tried again because the task's mappings were changing: EAGAIN (after its
        /// events are read), or ENOENT (asked again at once).
        public var retried = 0
        /// Per fault, from reading the fault to its page being in (ns).
        public var faultLatencyNs: [UInt64] = []
        /// From taking the fds to the last page in (s).
        public var allInSeconds = 0.0
    }

    final class Task {
        let uffd: Int32
        /// The restored pid; forked children have none we know (`parent` names them).
        let pid: Int32
        let label: String
        var runs: [LazyRun]
        var cursor: UInt64 = 0
        init(uffd: Int32, pid: Int32, label: String, runs: [LazyRun]) {
            self.uffd = uffd; self.pid = pid; self.label = label; self.runs = runs
            cursor = runs.first?.start ?? 0
        }
        var missing: Int { runs.reduce(0) { $0 + $1.pages } }

        func index(containing a: UInt64) -> Int? {
            var lo = 0, hi = runs.count
            while lo < hi { let m = (lo + hi) / 2; if runs[m].end <= a { lo = m + 1 } else { hi = m } }
            return lo < runs.count && runs[lo].start <= a ? lo : nil
        }

        /// Removes [s, e) from the missing runs; returns how many pages went.
        @discardableResult
        func drop(_ s: UInt64, _ e: UInt64) -> Int {
            var out: [LazyRun] = []
            var gone = 0
            for r in runs {
                guard r.end > s && r.start < e else { out.append(r); continue }
                if let a = r.clipped(r.start, s) { out.append(a) }
                if let b = r.clipped(e, r.end) { out.append(b) }
                gone += r.clipped(s, e)!.pages
            }
            runs = out
            return gone
        }
    }

    /// What became of a copy: all in, to be tried again once the task's events are read, or
    /// the task is gone.
    enum Placed { case done, later, gone }

    let source: any LazyPageSource
    let socketPath: String
    let log = Logger(label: "lazy-pages")
    var tasks: [Task] = []
    var stats = Stats()
    /// Faults read but not served yet (a non-cooperative event was pending: EAGAIN).
    var pendingFaults: [(task: Task, addr: UInt64, readAt: UInt64)] = []
    let buf: UnsafeMutableRawPointer
    let bufPages: Int
    var rr = 0
    /// The restored processes, for killing the tree when pages can no longer come.
    var roots: [Int32] = []
    /// Set when a missing page can no longer be served; the tree is killed.
    var fatal: String?
    var servedFault = false
    /// A background copy was put off: wait a little for the event behind it before the next.
    var backoff = false
    /// The restore's connection, open until its tree resumes: no background fill before.
    var restore: Int32 = -1
    /// When the last fault was read (uptime ns): background chunks stay small for a while
    /// after, so the next fault waits behind 64 KiB, not 1 MiB.
    var lastFaultAt: UInt64 = 0
    static let recentFaultNs: UInt64 = 20_000_000
    static let smallChunkPages = 16

    public init(source: any LazyPageSource, socketPath: String) {
        self.source = source
        self.socketPath = socketPath
        bufPages = max(source.faultPages, source.backgroundPages)
        buf = UnsafeMutableRawPointer.allocate(byteCount: bufPages * imagePageSize, alignment: imagePageSize)
    }

    deinit {
        buf.deallocate()
        for t in tasks { close(t.uffd) }
    }

    /// Listens, takes the tasks, serves until done. `ready` runs once the socket listens.
    public func run(ready: () -> Void = {}) throws -> Stats {
        let listener = try LazyHandoff.listen(path: socketPath)
        ready()
        let conn: Int32
        do {
            defer { close(listener); unlink(socketPath) }
            while true {
                let c = accept(listener, nil, nil)
                if c < 0 && errno == EINTR { continue }
                guard c >= 0 else { throw LazyPagesError.handoff("accept: \(String(cString: strerror(errno)))") }
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                conn = c
                restore = c
                break
            }
        }
        defer { if restore >= 0 { close(restore) } }
        let got = try LazyHandoff.receive(over: conn)
        for t in got {
            tasks.append(Task(uffd: t.uffd, pid: t.pid, label: "pid \(t.pid)", runs: t.runs))
            roots.append(t.pid)
            // The fd must not block: a read with nothing queued returns EAGAIN.
            _ = fcntl(t.uffd, F_SETFL, fcntl(t.uffd, F_GETFL) | O_NONBLOCK)
        }
        stats.tasks = tasks.count
        try LazyHandoff.acknowledge(over: conn)
        let start = Date()
        log.info("\(tasks.count) task(s), \(tasks.reduce(0) { $0 + $1.missing }) pages to serve from \(source.name)")
        try serve()
        stats.allInSeconds = Date().timeIntervalSince(start)
        log.info("all pages in after \(String(format: "%.3f", stats.allInSeconds)) s: \(stats.faults) faults (\(stats.faultPages) pages), \(stats.backgroundPages) in the background, \(stats.zeroPages) zero pages, \(stats.dropped) dropped, \(stats.alreadyThere) already there, \(stats.forks) forks, \(stats.retried) copies tried again (mappings changing)")
        return stats
    }

    func serve() throws {
        while true {
            retireFinished()
            if tasks.isEmpty { return }
            // Faults and events first; then one background chunk, so a fault waits at most one chunk.
            var pfds = tasks.map { pollfd(fd: $0.uffd, events: Int16(POLLIN), revents: 0) }
            if restore >= 0 { pfds.append(pollfd(fd: restore, events: Int16(POLLIN), revents: 0)) }
            // Right after a fault the task usually faults again within microseconds: wait a
            // little for that before starting a background chunk it would have to wait behind.
            // Not longer: a tree that faults all the time (fork00) starved the background fill
            // at 2 ms, and every forked child kept its userfaultfd open until EMFILE.
            var wait = timespec(tv_sec: 0, tv_nsec: !pendingFaults.isEmpty || restore >= 0 || backoff ? 1_000_000 : servedFault ? 200_000 : 0)
            let n = pfds.withUnsafeMutableBufferPointer { fp in
                withUnsafeMutablePointer(to: &wait) { ck_syscall6(271 /* ppoll */, Int(bitPattern: fp.baseAddress), fp.count, Int(bitPattern: $0), 0, 8, 0) }
            }
            servedFault = false
            backoff = false
            if n < 0 && errno != EINTR { throw LazyPagesError.source("poll: \(String(cString: strerror(errno)))") }
            let snapshot = tasks
            for (i, p) in pfds.enumerated() where p.revents != 0 {
                if i == snapshot.count {
                    close(restore); restore = -1  // the restore closed it: the tree runs
                    continue
                }
                try drainMessages(snapshot[i])
            }
            try retryPending()
            if n <= 0 && pendingFaults.isEmpty && restore < 0 { try backgroundChunk() }
            if let f = fatal { try killTree(because: LazyPagesError.kernel(pid: 0, call: f, errno: 0)) }
        }
    }

    /// Tasks with nothing missing give their fd back (the kernel unregisters the ranges).
    func retireFinished() {
        tasks.removeAll { t in
            guard t.runs.isEmpty, !pendingFaults.contains(where: { $0.task === t }) else { return false }
            close(t.uffd)
            log.debug("\(t.label): every page in")
            return true
        }
    }

    /// Reads everything queued on the task's userfaultfd, then applies the events before
    /// serving the faults: the kernel hands out faults ahead of events, but an event read
    /// describes a change already made, and a fault must be served against the result (a
    /// fault at the new place of a moved range would otherwise get a zero page).
    func drainMessages(_ t: Task) throws {
        var msg = [UInt8](repeating: 0, count: 32 * 16)
        var faults: [[UInt8]] = []
        reading: while tasks.contains(where: { $0 === t }) {
            let n = msg.withUnsafeMutableBytes { Glibc.read(t.uffd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN { break reading }
                throw LazyPagesError.kernel(pid: t.pid, call: "read(userfaultfd)", errno: errno)
            }
            if n == 0 { gone(t, why: "userfaultfd closed"); return }
            for k in 0..<(n / 32) {
                let m = Array(msg[(k * 32)..<(k * 32 + 32)])
                if Int32(m[0]) == CK_UFFD_EVENT_PAGEFAULT { faults.append(m) } else { try handle(m, from: t) }
            }
        }
        for m in faults where tasks.contains(where: { $0 === t }) { try handle(m, from: t) }
    }

    func handle(_ m: [UInt8], from t: Task) throws {
        let a = m.u64(at: 8), b = m.u64(at: 16), c = m.u64(at: 24)
        switch Int32(m[0]) {
        case CK_UFFD_EVENT_PAGEFAULT:
            let now = DispatchTime.now().uptimeNanoseconds
            lastFaultAt = now
            stats.faults += 1
            servedFault = true
            try serveFault(t, addr: b & ~UInt64(imagePageSize - 1), readAt: now)
        case CK_UFFD_EVENT_FORK:
            // The child's userfaultfd arrives installed in our fd table; it misses what the parent misses.
            let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: a))
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            let child = Task(uffd: fd, pid: 0, label: "child of \(t.label)", runs: t.runs)
            child.cursor = t.cursor
            tasks.append(child)
            stats.forks += 1
            log.debug("\(t.label) forked: \(child.missing) pages missing in the child")
        case CK_UFFD_EVENT_REMAP:
            // Pages at [a, a+c) are now at [b, b+c): same origin, new place.
            stats.dropped += t.drop(b, b + c)
            var moved: [LazyRun] = []
            for r in t.runs where r.end > a && r.start < a + c {
                var x = r.clipped(a, a + c)!
                x.start = x.start - a + b; x.end = x.end - a + b
                moved.append(x)
            }
            t.drop(a, a + c)
            t.runs = (t.runs + moved).sorted { $0.start < $1.start }
            log.debug("\(t.label): mremap 0x\(String(a, radix: 16)) -> 0x\(String(b, radix: 16)) (\(c) bytes)")
        case CK_UFFD_EVENT_REMOVE, CK_UFFD_EVENT_UNMAP:
            // Discarded or unmapped: what was there must not come back later.
            stats.dropped += t.drop(a, b)
        default:
            log.warning("\(t.label): unknown userfaultfd event 0x\(String(m[0], radix: 16))")
        }
    }

    func serveFault(_ t: Task, addr: UInt64, readAt: UInt64) throws {
        t.cursor = addr
        guard let i = t.index(containing: addr) else {
            // Never dumped (a hole), discarded, or filled meanwhile: zero unless already there.
            var z = ck_uffdio_zeropage(range: ck_uffdio_range(start: addr, len: UInt64(imagePageSize)), mode: 0, zeropage: 0)
            if ck_ioctl(t.uffd, UInt(CK_UFFDIO_ZEROPAGE), &z) == 0 {
                stats.zeroPages += 1
            } else {
                let e = ck_errno()
                if e == EAGAIN { pendingFaults.append((t, addr, readAt)); return }
                if e == ESRCH || e == ENOENT && !isAlive(t) { gone(t, why: "exited"); return }
                var r = ck_uffdio_range(start: addr, len: UInt64(imagePageSize))
                _ = ck_ioctl(t.uffd, UInt(CK_UFFDIO_WAKE), &r)
            }
            stats.faultLatencyNs.append(DispatchTime.now().uptimeNanoseconds - readAt)
            return
        }
        let r = t.runs[i]
        let end = min(r.end, addr + UInt64(source.faultPages * imagePageSize))
        let page = UInt64(imagePageSize)
        // The faulting page alone first (read and placed: the task runs on), then its prefetch.
        let done = try transfer(r.clipped(addr, source.readsCheaply ? addr + page : end)!, for: t, background: false)
        if !done { pendingFaults.append((t, addr, readAt)); return }
        stats.faultLatencyNs.append(DispatchTime.now().uptimeNanoseconds - readAt)
        if source.readsCheaply && end > addr + page, let j = t.index(containing: addr + page) {
            let rest = t.runs[j]
            _ = try transfer(rest.clipped(addr + page, min(rest.end, end))!, for: t, background: false)
        }
    }

    func retryPending() throws {
        guard !pendingFaults.isEmpty else { return }
        let p = pendingFaults
        pendingFaults = []
        for f in p where tasks.contains(where: { $0 === f.task }) {
            try serveFault(f.task, addr: f.addr, readAt: f.readAt)
        }
    }

    func backgroundChunk() throws {
        guard !tasks.isEmpty else { return }
        // The restored tasks first (forked children get the same origin pages in the same
        // transfer): a parent that forks all the time hands every child its missing pages
        // and a userfaultfd, until its own are all in; taking turns with the children, it
        // never got there (fork00: EMFILE).
        let restored = tasks.indices.filter { tasks[$0].pid != 0 && !tasks[$0].runs.isEmpty }
        let pool = restored.isEmpty ? Array(tasks.indices) : restored
        rr = (rr + 1) % pool.count
        let t = tasks[pool[rr]]
        guard !t.runs.isEmpty else { return }
        // Nearest the last fault: the run holding the cursor or the next one, then wrap.
        let i = t.runs.firstIndex { $0.end > t.cursor } ?? 0
        let r = t.runs[i]
        let s = max(r.start, t.cursor < r.end ? t.cursor : r.start)
        let recent = DispatchTime.now().uptimeNanoseconds &- lastFaultAt < LazyPagesDaemon.recentFaultNs
        let chunk = recent ? min(source.backgroundPages, LazyPagesDaemon.smallChunkPages) : source.backgroundPages
        let e = min(r.end, s + UInt64(chunk * imagePageSize))
        t.cursor = e
        if try !transfer(r.clipped(s, e)!, for: t, background: true) { backoff = true }
    }

    /// Fetches `run`'s bytes once and copies them into `t` and into every other task still
    /// missing the same origin pages (a forked child): each page comes from the source once.
    /// False if the copy into `t` must wait for its events (the caller tries again after).
    func transfer(_ run: LazyRun, for t: Task, background: Bool) throws -> Bool {
        do {
            try source.read(pid: run.originPid, vaddr: run.originStart, pages: run.pages, into: buf)
        } catch {
            try killTree(because: error)
        }
        let oStart = run.originStart, oEnd = run.originStart + UInt64(run.pages * imagePageSize)
        var complete = true
        for other in [t] + tasks.filter({ $0 !== t }) {
            for r in other.runs where r.originPid == run.originPid {
                let os = max(r.originStart, oStart), oe = min(r.originStart + UInt64(r.pages * imagePageSize), oEnd)
                guard os < oe else { continue }
                let dst = r.start + (os - r.originStart), from = buf + Int(os - oStart), n = Int(oe - os)
                var placed: Placed
                if other === t && !background && dst == run.start && n > imagePageSize {
                    // The faulting page alone first: its copy wakes the task, which runs on while
                    // the pages after it (the prefetch) go in.
                    placed = copy(into: t, dst: dst, from: from, bytes: imagePageSize, background: false)
                    if placed == .done { placed = copy(into: t, dst: dst + UInt64(imagePageSize), from: from + imagePageSize, bytes: n - imagePageSize, background: false) }
                } else {
                    placed = copy(into: other, dst: dst, from: from, bytes: n, background: background && other === t)
                }
                if other === t && placed != .done { complete = false }
                if placed == .gone { break }
            }
        }
        return complete
    }

    /// UFFDIO_COPY of [dst, dst+bytes); the pages that went in (or were there) leave the runs.
    ///
    /// Since Linux 6.8 (per-VMA locks) UFFDIO_COPY looks the VMA up before it checks whether
    /// an munmap/mremap is in flight, so a range the task has just unmapped or moved answers
    /// ENOENT, not EAGAIN, while the event that says so is still unread. Until that event is
    /// read every copy answers EAGAIN (checked on entry), so ENOENT is asked again at once:
    /// EAGAIN means wait for the event; ENOENT twice is no race. Then the range crosses VMAs
    /// split without an event (mprotect, mlock) and goes page by page, and a single page that
    /// still fails has no mapping (dropped) or one we cannot fill (fatal).
    func copy(into t: Task, dst: UInt64, from src: UnsafeMutableRawPointer, bytes: Int, background: Bool) -> Placed {
        var at = 0
        var askedAgain = false
        defer { if at > 0 { t.drop(dst, dst + UInt64(at)) } }
        while at < bytes {
            var c = ck_uffdio_copy(dst: dst + UInt64(at), src: UInt64(UInt(bitPattern: src + at)), len: UInt64(bytes - at), mode: 0, copy: 0)
            if ck_ioctl(t.uffd, UInt(CK_UFFDIO_COPY), &c) == 0 {
                count(Int(c.copy) / imagePageSize, background: background)
                at = bytes
                return .done
            }
            let e = ck_errno()
            if c.copy > 0 { count(Int(c.copy) / imagePageSize, background: background); at += Int(c.copy); askedAgain = false }
            switch e {
            case EEXIST:
                // The task wrote this page itself (or it came meanwhile): keep it.
                stats.alreadyThere += 1
                at += imagePageSize
                askedAgain = false
            case EAGAIN:
                if c.copy <= 0 { stats.retried += 1; return .later }
            case EINTR:
                continue
            case ESRCH:
                gone(t, why: "exited"); return .gone
            case ENOENT:
                if !isAlive(t) { gone(t, why: "exited"); return .gone }
                if !askedAgain { askedAgain = true; stats.retried += 1; continue }
                let a = dst + UInt64(at), n = bytes - at
                if n == imagePageSize { return unplaceable(t, a) }
                var result = Placed.done
                for p in stride(from: 0, to: n, by: imagePageSize) {
                    switch copy(into: t, dst: a + UInt64(p), from: src + at + p, bytes: imagePageSize, background: background) {
                    case .done: break
                    case .later: result = .later
                    case .gone: return .gone
                    }
                }
                return result
            case EFAULT, EINVAL:
                if !isAlive(t) { gone(t, why: "exited"); return .gone }
                fatal = "\(t.label): UFFDIO_COPY of \(bytes - at) bytes at 0x\(String(dst + UInt64(at), radix: 16)) failed (\(String(cString: strerror(e))))"
                return .later
            default:
                log.warning("\(t.label): UFFDIO_COPY 0x\(String(dst + UInt64(at), radix: 16)): errno \(e)")
                gone(t, why: "UFFDIO_COPY failed (errno \(e))"); return .gone
            }
        }
        return .done
    }

    /// A missing page that cannot be placed twice over, with no event between. With nothing
    /// mapped there nothing can read it: it is dropped. Mapped, it is memory the task would
    /// read as zeros, so the tree must not run on it.
    func unplaceable(_ t: Task, _ a: UInt64) -> Placed {
        if t.pid > 0, let maps = try? ProcReader().maps(pid: t.pid), !maps.contains(where: { $0.start <= a && a < $0.end }) {
            stats.dropped += t.drop(a, a + UInt64(imagePageSize))
            log.debug("\(t.label): nothing mapped at 0x\(String(a, radix: 16)) any more: its page is dropped")
            return .done
        }
        fatal = "\(t.label): UFFDIO_COPY of the page at 0x\(String(a, radix: 16)) failed twice (\(String(cString: strerror(ENOENT)))) with no userfaultfd event to explain it"
        return .later
    }

    func count(_ pages: Int, background: Bool) {
        if background { stats.backgroundPages += pages } else { stats.faultPages += pages }
    }

    func isAlive(_ t: Task) -> Bool { t.pid == 0 || kill(t.pid, 0) == 0 }

    func gone(_ t: Task, why: String) {
        log.debug("\(t.label) gone (\(why)) with \(t.missing) pages never needed")
        pendingFaults.removeAll { $0.task === t }
        tasks.removeAll { $0 === t }
        close(t.uffd)
    }

    /// The source failed while pages are missing: nothing may run on memory that will never
    /// come. Every restored process and its descendants are killed, then the error is thrown.
    func killTree(because error: Error) throws -> Never {
        let proc = ProcReader()
        var all: [Int32] = []
        var queue = roots
        while let p = queue.popLast() {
            guard !all.contains(p) else { continue }
            all.append(p)
            queue += (try? proc.allChildren(pid: p)) ?? []
        }
        for p in all { kill(p, SIGKILL) }
        for t in tasks { close(t.uffd) }
        tasks = []
        log.error("\(error): killed \(all)")
        var why = "\(error)"
        if let e = error as? LazyPagesError {
            if case .source(let w) = e { why = w }
            if case .kernel(_, let c, _) = e { why = c }
        }
        throw LazyPagesError.treeKilled(source: source.name, reason: why, killed: all)
    }
}
