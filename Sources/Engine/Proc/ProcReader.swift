import Glibc

/// Reads /proc files whole and hands them to the parsers; the only reader of /proc in cryo.
/// /proc files report size 0, so each is read with one read loop until EOF.
/// A process (or thread) that vanished shows as `ProcError.gone`; a missing file of a live
/// process (an fd closed meanwhile, exe of a zombie) as `.io(path:errno:)`.
public struct ProcReader: Sendable {
    public let root: String
    public init(root: String = "/proc") { self.root = root }

    public func path(pid: Int32, _ rest: String) -> String { "\(root)/\(pid)/\(rest)" }
    public func path(pid: Int32, tid: Int32, _ rest: String) -> String { "\(root)/\(pid)/task/\(tid)/\(rest)" }

    /// Whether /proc/PID exists (zombies included).
    public func exists(pid: Int32) -> Bool { access("\(root)/\(pid)", F_OK) == 0 }

    // MARK: raw access

    public func readBytes(_ path: String, pid: Int32? = nil, tid: Int32? = nil) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw failure(path, errno, pid: pid, tid: tid) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 16384)
        var used = 0
        while true {
            if used == buf.count { buf.append(contentsOf: repeatElement(0, count: buf.count)) }
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + used, $0.count - used) }
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                throw failure(path, e, pid: pid, tid: tid)
            }
            if n == 0 { break }
            used += n
        }
        buf.removeSubrange(used...)
        return buf
    }

    public func readText(_ path: String, pid: Int32? = nil, tid: Int32? = nil) throws -> String {
        String(decoding: try readBytes(path, pid: pid, tid: tid), as: UTF8.self)
    }

    public func readLink(_ path: String, pid: Int32? = nil, tid: Int32? = nil) throws -> String {
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buf.withUnsafeMutableBytes { readlink(path, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        if n < 0 { throw failure(path, errno, pid: pid, tid: tid) }
        return String(decoding: buf[0..<n], as: UTF8.self)
    }

    /// ENOENT/ESRCH mean "gone" only when the process (or thread) directory itself is gone.
    func failure(_ path: String, _ e: Int32, pid: Int32?, tid: Int32?) -> ProcError {
        guard let pid, e == ENOENT || e == ESRCH else { return .io(path: path, errno: e) }
        if !exists(pid: pid) { return .gone(pid: pid) }
        if let tid, access("\(root)/\(pid)/task/\(tid)", F_OK) != 0 { return .gone(pid: tid) }
        return e == ESRCH ? .gone(pid: tid ?? pid) : .io(path: path, errno: e)
    }

    func listNumbers(_ dir: String, pid: Int32) throws -> [Int32] {
        guard let d = opendir(dir) else { throw failure(dir, errno, pid: pid, tid: nil) }
        defer { closedir(d) }
        var out: [Int32] = []
        while let ent = readdir(d) {
            let n = withUnsafeBytes(of: ent.pointee.d_name) { raw -> Int32? in
                var v: Int32 = 0
                var any = false
                for c in raw {
                    if c == 0 { break }
                    guard c >= 0x30 && c <= 0x39 else { return nil }
                    v = v &* 10 &+ Int32(c - 0x30); any = true
                }
                return any ? v : nil
            }
            if let n { out.append(n) }
        }
        return out.sorted()
    }

    // MARK: parsed files

    /// /proc/PID/pagemap, open for `pagemapWords`; the caller closes `fd`.
    public func openPagemap(pid: Int32) throws -> (fd: Int32, path: String) {
        let file = path(pid: pid, "pagemap")
        let fd = open(file, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw errno == ENOENT || errno == ESRCH ? ProcError.gone(pid: pid) : ProcError.io(path: file, errno: errno) }
        return (fd, file)
    }

    /// Raw pagemap words for `count` pages from `start` (bit 63 present, bits 0-54 the PFN as
    /// root).
    public func pagemapWords(_ map: (fd: Int32, path: String), start: UInt64, count: Int) throws -> [UInt64] {
        var words = [UInt64](repeating: 0, count: count)
        let want = count * 8
        let got = words.withUnsafeMutableBytes { pread(map.fd, $0.baseAddress, want, off_t(start / 4096 * 8)) }
        guard got == want else { throw ProcError.io(path: map.path, errno: got < 0 ? errno : EIO) }
        return words
    }

    public func maps(pid: Int32) throws -> [ProcMapping] {
        let p = path(pid: pid, "maps")
        return try ProcMapsParser.parse(try readBytes(p, pid: pid), source: p)
    }

    public func smaps(pid: Int32) throws -> [ProcSmapsEntry] {
        let p = path(pid: pid, "smaps")
        return try ProcSmapsParser.parse(try readBytes(p, pid: pid), source: p)
    }

    public func status(pid: Int32) throws -> ProcStatus {
        let p = path(pid: pid, "status")
        return try ProcStatusParser.parse(try readText(p, pid: pid), source: p)
    }

    public func taskStatus(pid: Int32, tid: Int32) throws -> ProcStatus {
        let p = path(pid: pid, tid: tid, "status")
        return try ProcStatusParser.parse(try readText(p, pid: pid, tid: tid), source: p)
    }

    public func stat(pid: Int32) throws -> ProcStat {
        let p = path(pid: pid, "stat")
        return try ProcStatParser.parse(try readText(p, pid: pid), source: p)
    }

    public func taskStat(pid: Int32, tid: Int32) throws -> ProcStat {
        let p = path(pid: pid, tid: tid, "stat")
        return try ProcStatParser.parse(try readText(p, pid: pid, tid: tid), source: p)
    }

    /// Whether the process is gone, a zombie, or exiting as a whole: its leader and every
    /// thread have PF_EXITING (or are gone). A leader that exits alone while its threads run
    /// is not an exiting process.
    public func isExiting(pid: Int32) -> Bool {
        guard let st = try? stat(pid: pid) else { return true }
        if st.isZombie { return true }
        guard st.isExiting else { return false }
        guard let tids = try? tasks(pid: pid) else { return true }
        return tids.allSatisfy { t in (try? taskStat(pid: pid, tid: t)).map { $0.isExiting || $0.isZombie } ?? true }
    }

    /// Thread ids of the process, sorted.
    public func tasks(pid: Int32) throws -> [Int32] { try listNumbers(path(pid: pid, "task"), pid: pid) }

    /// Children of one thread (each child belongs to the thread that forked it).
    public func children(pid: Int32, tid: Int32) throws -> [Int32] {
        let p = path(pid: pid, tid: tid, "children")
        let b = try readBytes(p, pid: pid, tid: tid)
        return try b.withUnsafeBufferPointer { u in
            try ProcBytes.tokens(u, 0, u.count).map { r -> Int32 in
                let e = u[r.upperBound - 1] == 0x0a ? r.upperBound - 1 : r.upperBound
                guard let v = ProcBytes.unsigned(u, r.lowerBound, e, radix: 10), let pid = Int32(exactly: v) else {
                    throw ProcError.malformed(path: p, line: 1, reason: "bad pid \"\(ProcBytes.string(u, r.lowerBound, r.upperBound))\"")
                }
                return pid
            }
        }.sorted()
    }

    /// Children over all threads, sorted. Threads that exit meanwhile are skipped.
    public func allChildren(pid: Int32) throws -> [Int32] {
        var all: Set<Int32> = []
        for t in try tasks(pid: pid) {
            do {
                all.formUnion(try children(pid: pid, tid: t))
            } catch ProcError.gone(let g) where g == t && g != pid {
                continue
            }
        }
        return all.sorted()
    }

    public func fds(pid: Int32) throws -> [Int32] { try listNumbers(path(pid: pid, "fd"), pid: pid) }

    /// Where fd N points: a path (" (deleted)" kept), "pipe:[123]", "socket:[45]", "anon_inode:[eventfd]"...
    public func fdTarget(pid: Int32, fd: Int32) throws -> String { try readLink(path(pid: pid, "fd/\(fd)"), pid: pid) }

    public func fdinfo(pid: Int32, fd: Int32) throws -> ProcFdInfo {
        let p = path(pid: pid, "fdinfo/\(fd)")
        return try ProcFdInfoParser.parse(try readText(p, pid: pid), source: p)
    }

    /// /proc/locks: every file lock on the machine, and every task waiting for one.
    public func locks() throws -> [ProcFileLock] {
        let p = "\(root)/locks"
        return try ProcLocksParser.parse(try readText(p), source: p)
    }

    public func mountinfo(pid: Int32) throws -> [ProcMount] {
        let p = path(pid: pid, "mountinfo")
        return try ProcMountInfoParser.parse(try readText(p, pid: pid), source: p)
    }

    public func cwd(pid: Int32) throws -> String { try readLink(path(pid: pid, "cwd"), pid: pid) }
    public func root(pid: Int32) throws -> String { try readLink(path(pid: pid, "root"), pid: pid) }
    public func exe(pid: Int32) throws -> String { try readLink(path(pid: pid, "exe"), pid: pid) }

    /// /proc/PID/comm without the newline.
    public func comm(pid: Int32) throws -> String { try trimmedLine(path(pid: pid, "comm"), pid: pid) }

    public func cmdline(pid: Int32) throws -> [String] { try nulSeparated(path(pid: pid, "cmdline"), pid: pid) }
    public func environ(pid: Int32) throws -> [String] { try nulSeparated(path(pid: pid, "environ"), pid: pid) }

    /// /proc/PID/auxv as raw 64-bit words (type, value, type, value, ..., AT_NULL, 0), the form
    /// mm images keep.
    public func auxv(pid: Int32) throws -> [UInt64] {
        let b = try readBytes(path(pid: pid, "auxv"), pid: pid)
        var out: [UInt64] = []
        out.reserveCapacity(b.count / 8)
        var i = 0
        while i + 8 <= b.count {
            var v: UInt64 = 0
            for k in 0..<8 { v |= UInt64(b[i + k]) << UInt64(8 * k) }
            out.append(v)
            i += 8
        }
        return out
    }

    /// auxv as (AT_* type, value) pairs, up to AT_NULL.
    public func auxvEntries(pid: Int32) throws -> [(type: UInt64, value: UInt64)] {
        let w = try auxv(pid: pid)
        var out: [(type: UInt64, value: UInt64)] = []
        var i = 0
        while i + 1 < w.count, w[i] != 0 { out.append((w[i], w[i + 1])); i += 2 }
        return out
    }

    /// Thread name from /proc/PID/task/TID/comm, without the newline.
    public func taskComm(pid: Int32, tid: Int32) throws -> String {
        try trimmedLine(path(pid: pid, tid: tid, "comm"), pid: pid, tid: tid)
    }

    /// personality(2) flags; hex in the file.
    public func personality(pid: Int32) throws -> UInt32 {
        let p = path(pid: pid, "personality")
        guard let v = UInt32(try trimmedLine(p, pid: pid), radix: 16) else {
            throw ProcError.malformed(path: p, line: 1, reason: "not a hex number")
        }
        return v
    }

    /// Audit login uid; UInt32.max when unset.
    public func loginuid(pid: Int32) throws -> UInt32 {
        let p = path(pid: pid, "loginuid")
        guard let v = UInt32(try trimmedLine(p, pid: pid)) else { throw ProcError.malformed(path: p, line: 1, reason: "not a number") }
        return v
    }

    /// The syscall a blocked thread is in (/proc/PID/task/TID/syscall), nil if it runs.
    public func taskSyscall(pid: Int32, tid: Int32) -> Int? {
        guard let text = try? readText(path(pid: pid, tid: tid, "syscall"), pid: pid, tid: tid),
              let first = text.split(separator: " ").first else { return nil }
        return Int(first.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    public func posixTimers(pid: Int32) throws -> [ProcPosixTimer] {
        let p = path(pid: pid, "timers")
        return try ProcTimersParser.parse(try readText(p, pid: pid), path: p)
    }

    public func oomScoreAdj(pid: Int32) throws -> Int32 {
        let p = path(pid: pid, "oom_score_adj")
        guard let v = Int32(try trimmedLine(p, pid: pid)) else { throw ProcError.malformed(path: p, line: 1, reason: "not a number") }
        return v
    }

    /// The CPUs online now (/sys/devices/system/cpu/online: "0-3,6").
    public func onlineCPUs() throws -> Set<Int> {
        let p = "/sys/devices/system/cpu/online"
        var out: Set<Int> = []
        for part in try readText(p).split(whereSeparator: { $0 == "," || $0 == "\n" }) {
            let ends = part.split(separator: "-").map { Int($0) }
            guard let a = ends.first ?? nil, let b = ends.last ?? nil, ends.count <= 2 else { throw ProcError.malformed(path: p, line: 1, reason: "bad range \(part)") }
            out.formUnion(a...b)
        }
        return out
    }

    /// Which kinds of memory a core dump of the process holds (hex in the file).
    public func coredumpFilter(pid: Int32) throws -> UInt32 {
        let p = path(pid: pid, "coredump_filter")
        guard let v = UInt32(try trimmedLine(p, pid: pid), radix: 16) else { throw ProcError.malformed(path: p, line: 1, reason: "not a hex number") }
        return v
    }

    func trimmedLine(_ p: String, pid: Int32, tid: Int32? = nil) throws -> String {
        var b = try readBytes(p, pid: pid, tid: tid)
        while let l = b.last, l == 0x0a || l == 0x20 { b.removeLast() }
        return String(decoding: b, as: UTF8.self)
    }

    /// Inode of /proc/PID/ns/KIND ("pid", "mnt", "net", ...): "pid:[4026531836]" -> 4026531836.
    public func namespaceInode(pid: Int32, kind: String) throws -> UInt64 {
        try namespaceLink(path(pid: pid, "ns/\(kind)"), pid: pid, tid: nil)
    }

    /// Inode of /proc/PID/task/TID/ns/KIND: namespaces are per thread (setns, unshare).
    public func namespaceInode(pid: Int32, tid: Int32, kind: String) throws -> UInt64 {
        try namespaceLink(path(pid: pid, tid: tid, "ns/\(kind)"), pid: pid, tid: tid)
    }

    func namespaceLink(_ p: String, pid: Int32, tid: Int32?) throws -> UInt64 {
        let t = try readLink(p, pid: pid, tid: tid)
        guard let o = t.firstIndex(of: "["), let c = t.lastIndex(of: "]"), o < c,
              let v = UInt64(t[t.index(after: o)..<c]) else {
            throw ProcError.malformed(path: p, line: 1, reason: "unexpected link \"\(t)\"")
        }
        return v
    }

    /// NUL-separated lists; a final element without its NUL (rewritten argv) is kept.
    func nulSeparated(_ p: String, pid: Int32) throws -> [String] {
        let b = try readBytes(p, pid: pid)
        var out = b.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        if out.last == "" { out.removeLast() }
        return out
    }
}
