import Foundation
import Glibc

/// What an operator asks of a checkpoint without restoring it (`cryo image x`, `cryo image
/// diff`): the tree, each task's fds, its mappings with the pages the images hold, the parent
/// chain. Everything is read through the validating readers.
public struct ImageExplorer {
    public let dir: ImageDirectory
    public init(path: String) throws { dir = try ImageDirectory(path: path) }

    public struct Task: Codable, Equatable, Sendable {
        public var pid: UInt32, ppid: UInt32, pgid: UInt32, sid: UInt32
        public var comm: String
        public var state: String
        public var threads: [UInt32]
    }

    public func ps() throws -> [Task] {
        try dir.read(.pstree, as: Img_PstreeEntry.self).map { e in
            let core = try? dir.readOne(.core, id: Int(e.pid), as: Img_CoreEntry.self)
            let st = core.map { TaskState(rawValue: $0.tc.taskState).map { "\($0)" } ?? "state \($0.tc.taskState)" } ?? "?"
            return Task(pid: e.pid, ppid: e.ppid, pgid: e.pgid, sid: e.sid, comm: core?.tc.comm ?? "?", state: st, threads: e.threads)
        }
    }

    public struct Fd: Codable, Equatable, Sendable {
        public var fd: String
        public var target: String
    }
    public struct TaskFds: Codable, Equatable, Sendable {
        public var pid: UInt32
        public var fds: [Fd]
    }

    public func fds() throws -> [TaskFds] {
        let files = dir.exists(.files) ? try dir.read(.files, as: Img_FileEntry.self) : []
        let byID = Dictionary(files.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        func name(_ id: UInt32) -> String { byID[id].map(Self.describe) ?? "file id \(id) (not in files.img)" }
        return try dir.read(.pstree, as: Img_PstreeEntry.self).map { t in
            var out: [Fd] = []
            if let ids = try? dir.readOne(.ids, id: Int(t.pid), as: Img_TaskKobjIdsEntry.self), dir.exists(.fdinfo, Int(ids.filesID)) {
                for f in try dir.read(.fdinfo, id: Int(ids.filesID), as: Img_FdinfoEntry.self) {
                    out.append(Fd(fd: String(f.fd), target: name(f.id)))
                }
            }
            if dir.exists(.fs, Int(t.pid)), let fs = try? dir.readOne(.fs, id: Int(t.pid), as: Img_FsEntry.self) {
                out.append(Fd(fd: "cwd", target: name(fs.cwdID)))
                out.append(Fd(fd: "root", target: name(fs.rootID)))
            }
            if let mm = try? dir.readOne(.mm, id: Int(t.pid), as: Img_MmEntry.self), mm.exeFileID != 0 {
                out.append(Fd(fd: "exe", target: name(mm.exeFileID)))
            }
            return TaskFds(pid: t.pid, fds: out)
        }
    }

    /// What an fd points to, in the words `ls -l /proc/PID/fd` would use.
    static func describe(_ f: Img_FileEntry) -> String {
        switch f.type {
        case .reg: return f.reg.name + (f.reg.deleted ? " (deleted)" : "")
        case .pipe: return "pipe[\(f.pipe.pipeID)]"
        case .fifo: return "fifo[\(f.fifo.pipeID)]"
        case .unixsk: return "unix socket[\(f.usk.ino)]" + (f.usk.name.isEmpty ? "" : " " + String(decoding: f.usk.name, as: UTF8.self))
        case .inetsk:
            let proto = f.isk.proto == 6 ? "tcp" : f.isk.proto == 17 ? "udp" : "proto \(f.isk.proto)"
            return "\(proto) socket[\(f.isk.ino)] port \(f.isk.srcPort)" + (f.isk.dstPort != 0 ? " -> \(f.isk.dstPort)" : "")
        case .eventfd: return "eventfd"
        case .eventpoll: return "eventpoll (\(f.epfd.tfd.count) watched)"
        case .signalfd: return "signalfd"
        case .timerfd: return "timerfd"
        case .inotify: return "inotify"
        case .memfd: return "memfd"
        case .pidfd: return "pidfd of pid \(f.pidfd.nspid)"
        default: return "\(f.type)"
        }
    }

    public struct Mapping: Codable, Equatable, Sendable {
        public var start: String, end: String
        public var prot: String
        public var what: String
        /// Pages whose bytes this directory holds, pages held by a parent snapshot, pages left
        /// to a lazy-pages server, and pages shared copy-on-write with the parent process.
        public var pagesHere: Int, pagesInParent: Int, pagesLazy: Int, pagesCow: Int
        /// Every page the dump saw present, wherever it is stored.
        public var rss: Int { pagesHere + pagesInParent + pagesLazy + pagesCow }
    }
    public struct TaskMappings: Codable, Equatable, Sendable {
        public var pid: UInt32
        public var mappings: [Mapping]
    }

    public func mems() throws -> [TaskMappings] {
        let files = dir.exists(.files) ? try dir.read(.files, as: Img_FileEntry.self) : []
        let byID = Dictionary(files.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return try dir.read(.pstree, as: Img_PstreeEntry.self).compactMap { t -> TaskMappings? in
            guard dir.exists(.mm, Int(t.pid)) else { return nil }
            let mm = try dir.readOne(.mm, id: Int(t.pid), as: Img_MmEntry.self)
            let pm = dir.exists(.pagemap, Int(t.pid)) ? try dir.pageMap(pid: Int(t.pid)) : nil
            let maps = mm.vmas.map { v -> Mapping in
                var m = Mapping(start: Self.hex(v.start), end: Self.hex(v.end), prot: Self.prot(v.prot), what: Self.what(v, byID),
                                pagesHere: 0, pagesInParent: 0, pagesLazy: 0, pagesCow: 0)
                for e in pm?.entries(overlapping: v.start, v.end) ?? [] {
                    let n = Int((min(e.end, v.end) - max(e.vaddr, v.start)) / UInt64(imagePageSize))
                    if e.flags.contains(.cowParent) { m.pagesCow += n }
                    else if e.flags.contains(.parent) { m.pagesInParent += n }
                    else if e.entry.hasData { m.pagesHere += n }
                    else if e.flags.contains(.lazy) { m.pagesLazy += n }
                }
                return m
            }
            return TaskMappings(pid: t.pid, mappings: maps)
        }
    }

    static func what(_ v: Img_VmaEntry, _ files: [UInt32: Img_FileEntry]) -> String {
        let s = v.status
        if s & VmaStatus.vdso != 0 { return "[vdso]" }
        if s & VmaStatus.vvar != 0 || s & VmaStatus.vvarVclock != 0 { return "[vvar]" }
        if s & VmaStatus.vsyscall != 0 { return "[vsyscall]" }
        if s & VmaStatus.heap != 0 { return "[heap]" }
        if s & VmaStatus.stack != 0 { return "[stack]" }
        if s & (VmaStatus.filePrivate | VmaStatus.fileShared) != 0, v.shmid <= UInt64(UInt32.max), let f = files[UInt32(v.shmid)] {
            return describe(f) + (s & VmaStatus.fileShared != 0 ? " (shared)" : "")
        }
        if s & VmaStatus.anonShared != 0 { return "shared anonymous \(v.shmid)" }
        return ""
    }

    static func prot(_ p: UInt32) -> String {
        (p & 1 != 0 ? "r" : "-") + (p & 2 != 0 ? "w" : "-") + (p & 4 != 0 ? "x" : "-")
    }
    static func hex(_ v: UInt64) -> String { String(v, radix: 16, uppercase: false) }

    public struct Link: Codable, Equatable, Sendable {
        public var path: String
        public var pagesBytes: Int
        public var otherBytes: Int
        public var tasks: Int
    }

    /// This snapshot and its ancestors, newest first, with what each holds.
    public func chain() throws -> [Link] {
        try dir.chain().map { d in
            var pages = 0, other = 0
            for name in (try? FileManager.default.contentsOfDirectory(atPath: d.path)) ?? [] where name.hasSuffix(".img") {
                var st = stat()
                guard lstat(d.path + "/" + name, &st) == 0 else { continue }
                if name.hasPrefix("pages-") { pages += Int(st.st_blocks) * 512 } else { other += Int(st.st_size) }
            }
            let tasks = (try? d.read(.pstree, as: Img_PstreeEntry.self).count) ?? 0
            return Link(path: d.path, pagesBytes: pages, otherBytes: other, tasks: tasks)
        }
    }

    /// What changed from checkpoint `a` to checkpoint `b` of the same tree: tasks, fds,
    /// mappings, and pages whose bytes differ (read through each chain), one line each.
    public static func diff(_ a: ImageExplorer, _ b: ImageExplorer) throws -> [String] {
        var out: [String] = []
        let pa = try a.ps(), pb = try b.ps()
        let ta = Dictionary(pa.map { ($0.pid, $0) }, uniquingKeysWith: { x, _ in x })
        let tb = Dictionary(pb.map { ($0.pid, $0) }, uniquingKeysWith: { x, _ in x })
        for p in pa where tb[p.pid] == nil { out.append("task \(p.pid) (\(p.comm)) is gone") }
        for p in pb where ta[p.pid] == nil { out.append("task \(p.pid) (\(p.comm)) is new") }
        for p in pa { if let q = tb[p.pid], q != p { out.append("task \(p.pid): \(p) -> \(q)") } }
        let fa = Dictionary(try a.fds().map { ($0.pid, $0.fds) }, uniquingKeysWith: { x, _ in x })
        let fb = Dictionary(try b.fds().map { ($0.pid, $0.fds) }, uniquingKeysWith: { x, _ in x })
        for (pid, x) in fa.sorted(by: { $0.key < $1.key }) {
            guard let y = fb[pid] else { continue }
            let dx = Dictionary(x.map { ($0.fd, $0.target) }, uniquingKeysWith: { a, _ in a })
            let dy = Dictionary(y.map { ($0.fd, $0.target) }, uniquingKeysWith: { a, _ in a })
            for (fd, t) in x.map({ ($0.fd, $0.target) }) {
                if let u = dy[fd] { if u != t { out.append("task \(pid): fd \(fd): \(t) -> \(u)") } } else { out.append("task \(pid): fd \(fd) (\(t)) closed") }
            }
            for f in y where dx[f.fd] == nil { out.append("task \(pid): fd \(f.fd) (\(f.target)) opened") }
        }
        let ma = Dictionary(try a.mems().map { ($0.pid, $0.mappings) }, uniquingKeysWith: { x, _ in x })
        let mb = Dictionary(try b.mems().map { ($0.pid, $0.mappings) }, uniquingKeysWith: { x, _ in x })
        for (pid, x) in ma.sorted(by: { $0.key < $1.key }) {
            guard let y = mb[pid] else { continue }
            let kx = Set(x.map { "\($0.start)-\($0.end) \($0.prot) \($0.what)" }), ky = Set(y.map { "\($0.start)-\($0.end) \($0.prot) \($0.what)" })
            for m in kx.subtracting(ky).sorted() { out.append("task \(pid): mapping \(m) is gone") }
            for m in ky.subtracting(kx).sorted() { out.append("task \(pid): mapping \(m) is new") }
            let changed = try changedPages(a.dir, b.dir, pid: Int(pid))
            if changed > 0 { out.append("task \(pid): \(changed) page(s) changed") }
        }
        return out
    }

    /// Pages whose bytes differ, or are stored in one checkpoint and not the other.
    static func changedPages(_ a: ImageDirectory, _ b: ImageDirectory, pid: Int) throws -> Int {
        guard a.exists(.pagemap, pid), b.exists(.pagemap, pid) else { return 0 }
        func pages(_ d: ImageDirectory) throws -> [UInt64: (file: String, offset: Int)] {
            var out: [UInt64: (String, Int)] = [:]
            for s in try d.resolvePages(pid: pid) {
                guard let src = s.source else { continue }
                let file = src.directory.path + "/" + ImageKind.pages.fileName(Int(src.pagesID))
                for i in 0..<s.nrPages { out[s.vaddr + i * UInt64(imagePageSize)] = (file, src.offset + Int(i) * imagePageSize) }
            }
            return out
        }
        let x = try pages(a), y = try pages(b)
        var fds: [String: Int32] = [:]
        defer { fds.values.forEach { close($0) } }
        func read(_ at: (file: String, offset: Int)) throws -> [UInt8] {
            let fd: Int32
            if let f = fds[at.file] { fd = f } else {
                fd = open(at.file, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else { throw ImageError.io(file: at.file, errno: errno, what: "open") }
                fds[at.file] = fd
            }
            var buf = [UInt8](repeating: 0, count: imagePageSize)
            let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, imagePageSize, off_t(at.offset)) }
            guard n == imagePageSize else { throw ImageError.ioAt(file: at.file, offset: at.offset, errno: n < 0 ? errno : EIO, what: "read") }
            return buf
        }
        var changed = Set(x.keys).symmetricDifference(y.keys).count
        for (addr, p) in x {
            guard let q = y[addr] else { continue }
            if p.file == q.file && p.offset == q.offset { continue }
            if try read(p) != read(q) { changed += 1 }
        }
        return changed
    }
}
