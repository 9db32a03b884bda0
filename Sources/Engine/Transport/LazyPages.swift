import CKernel
import Foundation
import Glibc

/// What lazy restore (post-copy) may leave out and serve later through userfaultfd: private
/// anonymous memory, except the special mappings and locked memory (CRIU's
/// vma_entry_can_be_lazy). Restore, make-lazy and the lazy-pages daemon share this one rule.
public enum LazyPolicy {
    public static func canBeLazy(_ v: Img_VmaEntry) -> Bool {
        v.status & VmaStatus.anonPrivate != 0
            && v.status & (VmaStatus.vdso | VmaStatus.vvar | VmaStatus.vvarVclock | VmaStatus.vsyscall | VmaStatus.memfd | VmaStatus.anonShared | VmaStatus.fileShared | VmaStatus.filePrivate) == 0
            && v.flags & UInt32(MAP_LOCKED) == 0
    }

    /// The address ranges of `vmas` that may be lazy, sorted and joined.
    public static func lazyRanges(_ vmas: [Img_VmaEntry]) -> [PageRun] {
        PageRuns.normalize(vmas.filter(canBeLazy).map { PageRun(start: $0.start, end: $0.end) })
    }

    /// The ranges that may be lazy, one per VMA (UFFDIO_COPY works within one VMA), without the
    /// threads' rseq areas: the kernel writes those when rseq is registered during restore,
    /// before the userfaultfd exists, and a zero page would take the place of the missing one.
    public static func lazyRanges(_ vmas: [Img_VmaEntry], cores: [Img_CoreEntry]) -> [PageRun] {
        let pinned = PageRuns.normalize(cores.compactMap { c -> PageRun? in
            let th = c.threadCore
            guard th.hasRseqEntry, th.rseqEntry.rseqAbiPointer != 0 else { return nil }
            let p = th.rseqEntry.rseqAbiPointer
            return PageRun(start: p & ~(pageSize - 1), end: (p + UInt64(max(32, th.rseqEntry.rseqAbiSize)) + pageSize - 1) & ~(pageSize - 1))
        })
        let perVma = vmas.filter(canBeLazy).map { PageRun(start: $0.start, end: $0.end) }.sorted { $0.start < $1.start }
        return PageRuns.subtract(perVma, pinned)
    }

    /// The socket a restore hands its userfaultfds over, in the work directory (CRIU's name).
    public static func socketPath(workDir: String) -> String { workDir + "/lazy-pages.socket" }
}

/// Pages still missing in a task: `[start, end)` where they are now, and where their bytes come
/// from (the process whose images hold them, at `originStart`): a child's pages it shared
/// copy-on-write with its parent are the parent's, and mremap moves pages but not their origin.
public struct LazyRun: Sendable, Equatable {
    public var start: UInt64
    public var end: UInt64
    public var originPid: Int32
    public var originStart: UInt64
    public init(start: UInt64, end: UInt64, originPid: Int32, originStart: UInt64) {
        self.start = start; self.end = end; self.originPid = originPid; self.originStart = originStart
    }
    public var pages: Int { Int((end - start) / UInt64(imagePageSize)) }
    /// The origin address of `addr` (inside the run).
    public func origin(of addr: UInt64) -> UInt64 { originStart + (addr - start) }
    /// The piece of the run inside [s, e), if any.
    public func clipped(_ s: UInt64, _ e: UInt64) -> LazyRun? {
        let a = max(start, s), b = min(end, e)
        guard a < b else { return nil }
        return LazyRun(start: a, end: b, originPid: originPid, originStart: origin(of: a))
    }
}

public enum LazyPagesError: Error, CustomStringConvertible {
    case handoff(String)
    case kernel(pid: Int32, call: String, errno: Int32)
    case source(String)
    /// Pages can no longer come (the page server went away, or a page cannot be placed).
    case treeKilled(source: String, reason: String, killed: [Int32])

    public var description: String {
        switch self {
        case .handoff(let s): return "lazy-pages handoff: \(s)"
        case .kernel(let p, let c, let e): return "pid \(p): \(c): \(String(cString: strerror(e))) (errno \(e))"
        case .source(let s): return "lazy pages: \(s)"
        case .treeKilled(let src, let r, let k):
            return "missing pages can no longer come from \(src) (\(r)): killed the restored tree (pids \(k.map(String.init).joined(separator: ", "))) rather than leave it running on missing memory"
        }
    }
}

/// The restore -> lazy-pages handoff over a unix stream socket: a header (magic, task count),
/// then per task its pid and missing runs, and its userfaultfd as SCM_RIGHTS on one byte. The
/// daemon answers one byte once it holds every fd; only then does the restore resume the tree.
public enum LazyHandoff {
    static let magic: UInt32 = 0x4c_5a_59_31  // "LZY1"
    static let maxRuns = 1 << 22

    public struct Task: Sendable {
        public var pid: Int32
        public var runs: [LazyRun]
        public var uffd: Int32
    }

    static func writeAll(_ fd: Int32, _ b: [UInt8]) throws {
        var done = 0
        while done < b.count {
            let n = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + done, b.count - done, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw LazyPagesError.handoff("send: \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    static func readAll(_ fd: Int32, _ count: Int) throws -> [UInt8] {
        var b = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = b.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n < 0 && errno == EINTR { continue }
            if n == 0 { throw LazyPagesError.handoff("the restore closed the socket early") }
            guard n > 0 else { throw LazyPagesError.handoff("recv: \(String(cString: strerror(errno)))") }
            done += n
        }
        return b
    }

    /// Restore side: connects to the daemon's socket (waiting up to `wait` seconds for it).
    public static func connect(path: String, wait: Double = 10) throws -> Int32 {
        let deadline = Date().addingTimeInterval(wait)
        while true {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { throw LazyPagesError.handoff("socket: \(String(cString: strerror(errno)))") }
            var addr = try unixAddress(path)
            let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            if r == 0 { return fd }
            let e = errno
            close(fd)
            if (e == ENOENT || e == ECONNREFUSED) && Date() < deadline { usleep(10_000); continue }
            throw LazyPagesError.handoff("no lazy-pages daemon at \(path) (\(String(cString: strerror(e)))): start `cryo lazy-pages` first")
        }
    }

    public static func send(_ tasks: [Task], over fd: Int32) throws {
        var h: [UInt8] = []
        h.putU32(magic); h.putU32(UInt32(tasks.count))
        try writeAll(fd, h)
        for t in tasks {
            var b: [UInt8] = []
            b.putU32(UInt32(bitPattern: t.pid)); b.putU32(UInt32(t.runs.count))
            for r in t.runs { b.putU64(r.start); b.putU64(r.end); b.putU64(r.originStart); b.putU32(UInt32(bitPattern: r.originPid)); b.putU32(0) }
            try writeAll(fd, b)
            var one = [t.uffd]
            let rc = ck_send_fds(fd, &one, 1)
            guard rc == 0 else { throw LazyPagesError.handoff("sending the userfaultfd of pid \(t.pid): \(String(cString: strerror(-rc)))") }
        }
        let ack = try readAll(fd, 1)
        guard ack[0] == 0x52 else { throw LazyPagesError.handoff("the daemon refused the tasks") }
    }

    /// Daemon side: every task with its fd (ours now).
    public static func receive(over fd: Int32) throws -> [Task] {
        let h = try readAll(fd, 8)
        guard h.u32(at: 0) == magic else { throw LazyPagesError.handoff("bad magic 0x\(String(h.u32(at: 0), radix: 16))") }
        let n = Int(h.u32(at: 4))
        guard n <= 1 << 16 else { throw LazyPagesError.handoff("\(n) tasks") }
        var out: [Task] = []
        do {
            for _ in 0..<n {
                let th = try readAll(fd, 8)
                let pid = Int32(bitPattern: th.u32(at: 0)), count = Int(th.u32(at: 4))
                guard pid > 0, count <= maxRuns else { throw LazyPagesError.handoff("bad task header (pid \(pid), \(count) runs)") }
                let body = try readAll(fd, count * 32)
                var runs: [LazyRun] = []
                runs.reserveCapacity(count)
                for i in 0..<count {
                    let o = i * 32
                    let r = LazyRun(start: body.u64(at: o), end: body.u64(at: o + 8), originPid: Int32(bitPattern: body.u32(at: o + 24)), originStart: body.u64(at: o + 16))
                    guard r.start < r.end, r.start % UInt64(imagePageSize) == 0, r.end % UInt64(imagePageSize) == 0, r.originStart % UInt64(imagePageSize) == 0 else {
                        throw LazyPagesError.handoff("pid \(pid): bad run 0x\(String(r.start, radix: 16))-0x\(String(r.end, radix: 16))")
                    }
                    runs.append(r)
                }
                var got: Int32 = -1
                let k = ck_recv_fds(fd, &got, 1)
                guard k == 1 else { throw LazyPagesError.handoff("pid \(pid): no userfaultfd came (\(k < 0 ? String(cString: strerror(-k)) : "none"))") }
                out.append(Task(pid: pid, runs: runs.sorted { $0.start < $1.start }, uffd: got))
            }
        } catch {
            for t in out { close(t.uffd) }
            throw error
        }
        return out
    }

    public static func acknowledge(over fd: Int32) throws { try writeAll(fd, [0x52]) }

    static func unixAddress(_ path: String) throws -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw LazyPagesError.handoff("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, c) in bytes.enumerated() { p[i] = c } }
        return addr
    }

    /// Daemon side: a listening socket at `path` (a stale one is replaced), reachable by root only.
    public static func listen(path: String) throws -> Int32 {
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw LazyPagesError.handoff("socket: \(String(cString: strerror(errno)))") }
        var addr = try unixAddress(path)
        let old = umask(0o077)
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        umask(old)
        guard r == 0, Glibc.listen(fd, 4) == 0 else {
            let e = errno; close(fd)
            throw LazyPagesError.handoff("cannot listen on \(path): \(String(cString: strerror(e)))")
        }
        return fd
    }
}
