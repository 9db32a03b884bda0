import CKernel
import Foundation
import Glibc

/// A mount namespace whose root is not cryo's (a container that pivoted into its rootfs):
/// dumped mount by mount and rebuilt as CRIU does, in the restored root's new namespace:
/// the root from `--root`, then each mount, parents first: filesystems made afresh (proc,
/// sysfs, devpts, mqueue, tmpfs refilled from tmpfs-dev-N.tar.gz, cgroup2...), binds of a
/// mount of the tree, binds of the host's filesystems, and mounts named external
/// (`--external mnt[MOUNTPOINT]:KEY` at dump, `mnt[KEY]:PATH` at restore); then pivot_root.
enum MountTree {
    /// Filesystems a mount(2) of the type makes anew, with their options, in the restored
    /// namespaces (proc of the new pid namespace, sysfs of the new net namespace...).
    static let fresh: Set<String> = ["proc", "sysfs", "devpts", "mqueue", "tmpfs", "cgroup2", "tracefs", "securityfs", "debugfs", "fusectl", "binfmt_misc", "pstore", "bpf"]
    static let perMountFlags: UInt32 = 1 | 2 | 4 | 8 | 1024 | 2048 | (1 << 21) | (1 << 24)

    /// How one mount comes back.
    enum Kind: Equatable {
        case root
        case external(key: String)
        case fresh
        /// A bind of `source` (a mount of the tree) at `subpath` below its root.
        case bind(source: Int32, subpath: String)
        /// A bind of a filesystem of cryo's namespace, found again at restore by device and root.
        case host
    }

    static func isUnder(_ path: String, _ prefix: String) -> Bool {
        prefix == "/" || path == prefix || path.hasPrefix(prefix + "/")
    }

    static func sub(_ path: String, below prefix: String) -> String {
        prefix == "/" ? path : String(path.dropFirst(prefix.count))
    }

    /// Parents before children, from the root down.
    static func ordered<M>(_ all: [M], id: (M) -> Int32, parent: (M) -> Int32) -> [M] {
        let ids = Set(all.map(id))
        var out = all.filter { !ids.contains(parent($0)) }
        var i = 0
        while i < out.count {
            let p = id(out[i])
            out += all.filter { parent($0) == p && id($0) != p }
            i += 1
        }
        return out
    }

    /// A mount another one hides (mounted over a directory on its path after it was made, or
    /// propagated under one): cryo mounts by path, so it would land in the other's place.
    /// Returns the hidden mount and the one over it. `among`: the mounts to check.
    static func overmounted(_ mounts: [ProcMount], among: [ProcMount]? = nil) -> (hidden: ProcMount, by: ProcMount)? {
        let byID = Dictionary(mounts.map { ($0.mountId, $0) }, uniquingKeysWith: { a, _ in a })
        func ancestors(_ m: ProcMount) -> Set<Int32> {
            var out = Set<Int32>(), p = m.parentId
            while let q = byID[p], !out.contains(p) { out.insert(p); p = q.parentId }
            return out
        }
        for m in among ?? mounts {
            let up = ancestors(m)
            if let o = mounts.first(where: { o in
                o.mountId != m.mountId && !up.contains(o.mountId) && up.contains(o.parentId) && !ancestors(o).contains(m.mountId) && isUnder(m.mountPoint, o.mountPoint)
            }) { return (m, o) }
        }
        return nil
    }

    /// Refuses, naming the mount, what cannot come back; the kind of every other mount.
    static func classify(_ mounts: [ProcMount], host: [ProcMount], externals: [String: String], pid: Int32, inode: UInt64) throws -> [Int32: Kind] {
        func refuse(_ m: ProcMount, _ why: String) -> NamespaceError {
            NamespaceError.unsupported(pid: pid, kind: "mnt", inode: inode, reason: "mount \(m.mountId) at \(m.mountPoint) (\(m.fsType) from \(m.source), root \(m.root)) \(why)")
        }
        let order = ordered(mounts, id: \.mountId, parent: \.parentId)
        if let (m, o) = overmounted(mounts) { throw refuse(m, "is hidden by mount \(o.mountId) at \(o.mountPoint), made over its path: cryo restores mounts by path") }
        var kinds: [Int32: Kind] = [:]
        for m in order {
            if m.isUnbindable { throw refuse(m, "is unbindable, which cryo does not restore") }
            if kinds.isEmpty {
                kinds[m.mountId] = .root
                continue
            }
            if let key = externals[m.mountPoint] {
                kinds[m.mountId] = .external(key: key)
                continue
            }
            let dev = MountNamespace.dev(m)
            // Another mount of the same filesystem earlier in the tree, whose root holds ours.
            if let src = order.prefix(while: { $0.mountId != m.mountId }).filter({ MountNamespace.dev($0) == dev && isUnder(m.root, $0.root) && kinds[$0.mountId] != .root })
                .min(by: { $0.root.count < $1.root.count }) {
                kinds[m.mountId] = .bind(source: src.mountId, subpath: sub(m.root, below: src.root))
            } else if fresh.contains(m.fsType) && m.root == "/" {
                if m.superOptionList.contains("ro") && !m.isReadOnly { throw refuse(m, "is read-write on a read-only superblock") }
                kinds[m.mountId] = .fresh
            } else if host.contains(where: { MountNamespace.dev($0) == dev && isUnder(m.root, $0.root) }) {
                kinds[m.mountId] = .host
            } else {
                throw refuse(m, "is neither a filesystem cryo makes afresh, nor a bind of a mount of the tree or of cryo's namespace; name it --external mnt[\(m.mountPoint)]:KEY")
            }
        }
        // A slave of a group outside the tree copies its master from the path the restore
        // binds it from: the root (--root), or an external mount of the same filesystem.
        try MountPropagation.check(mounts, outside: host, reachable: { m in
            kinds[m.mountId] == .root || order.contains { o in
                if case .external? = kinds[o.mountId] { return MountNamespace.dev(o) == MountNamespace.dev(m) && isUnder(m.root, o.root) }
                return false
            }
        }, refuse: refuse)
        return kinds
    }

    // MARK: dump

    static func dump(_ mounts: [ProcMount], pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws -> [Img_MntEntry] {
        let inode = try proc.namespaceInode(pid: pid, kind: "mnt")
        let kinds = try classify(mounts, host: try proc.mountinfo(pid: getpid()), externals: externals.mounts, pid: pid, inode: inode)
        var entries: [Img_MntEntry] = []
        for m in ordered(mounts, id: \.mountId, parent: \.parentId) {
            var e = MountNamespace.entry(m)
            if case .external(let key)? = kinds[m.mountId] {
                e.extMount = true
                e.extKey = key
            }
            if kinds[m.mountId] == .fresh && m.fsType == "tmpfs" {
                try dumpTmpfs(m, pid: pid, images: images)
            }
            entries.append(e)
        }
        return entries
    }

    static func tmpfsImage(_ dev: UInt32) -> String { "tmpfs-dev-\(dev).tar.gz" }

    /// CRIU's tmpfs-dev-N.tar.gz: /bin/tar of the mount alone, cloned (open_tree) from inside
    /// the tree's namespace, so mounts over its directories do not hide what lies beneath.
    static func dumpTmpfs(_ m: ProcMount, pid: Int32, images: ImageDirectory) throws {
        let fd = try cloneMount(pid: pid, path: m.mountPoint)
        defer { close(fd) }
        let bytes = try Tar.run(["--create", "--gzip", "--one-file-system", "--numeric-owner", "--sparse", "--xattrs", "--acls",
                                 "--directory", "/proc/\(getpid())/fd/\(fd)", "--file", "-", "."], what: "tmpfs \(m.mountPoint) of pid \(pid)")
        try images.store.write(tmpfsImage(MountNamespace.dev(m)), bytes)
    }

    /// A detached copy of the mount at `path` in `pid`'s mount namespace, without its children.
    static func cloneMount(pid: Int32, path: String) throws -> Int32 {
        try inMountNamespace(of: pid, what: "mount \(path)") {
            let fd = path.withCString { ck_syscall6(SyscallNumber.openTree.rawValue, -100 /* AT_FDCWD */, Int(bitPattern: $0), 1 /* OPEN_TREE_CLONE */ | Int(O_CLOEXEC), 0, 0, 0) }
            guard fd >= 0 else { throw SystemCallError(call: "open_tree", errno: ck_errno(), context: "\(path) in pid \(pid)'s mount namespace") }
            return Int32(fd)
        }
    }

    /// Runs `body` on a thread of cryo's inside `pid`'s mount namespace (mount calls act only
    /// on mounts of the caller's namespace); the thread and its namespace end with the work.
    static func inMountNamespace<T>(of pid: Int32, what: String, _ body: @escaping () throws -> T) throws -> T {
        let job = MountNamespaceJob(body)
        let done = DispatchSemaphore(value: 0)
        let t = Thread { [job] in
            defer { done.signal() }
            job.r = Result {
                // setns(CLONE_NEWNS) needs a private fs_struct: this thread's own, gone with it.
                guard ck_syscall6(272 /* unshare */, 0x200 /* CLONE_FS */, 0, 0, 0, 0, 0) == 0 else {
                    throw SystemCallError(call: "unshare(CLONE_FS)", errno: ck_errno(), context: what)
                }
                let ns = open("/proc/\(pid)/ns/mnt", O_RDONLY | O_CLOEXEC)
                guard ns >= 0 else { throw SystemCallError(call: "open", errno: errno, context: "/proc/\(pid)/ns/mnt") }
                defer { close(ns) }
                guard ck_syscall6(308 /* setns */, Int(ns), 0x20000 /* CLONE_NEWNS */, 0, 0, 0, 0) == 0 else {
                    throw SystemCallError(call: "setns(mnt)", errno: ck_errno(), context: "pid \(pid)")
                }
                return try job.body()
            }
        }
        t.start()
        done.wait()
        return try job.r!.get()
    }

    // MARK: restore

    /// The path an external mount is bound from. When `path` lies on the mount's own
    /// filesystem (same device) above the mount's root, the root is kept below it: runc names
    /// a cgroup v1 hierarchy by its mountpoint, and the container's mount was its own cgroup.
    static func externalSource(_ e: Img_MntEntry, path: String, host: [ProcMount]) -> String {
        guard let h = host.filter({ isUnder(path, $0.mountPoint) }).max(by: { $0.mountPoint.count < $1.mountPoint.count }),
              MountNamespace.dev(h) == e.rootDev else { return path }
        let rest = sub(path, below: h.mountPoint)
        let fsPath = h.root == "/" ? (rest.isEmpty ? "/" : rest) : h.root + (rest == "/" ? "" : rest)
        guard isUnder(e.root, fsPath) else { return path }
        let below = sub(e.root, below: fsPath)
        return below == "/" || below.isEmpty ? path : path + below
    }

    /// Where a mount comes back from, checked before anything is made: nil for a fresh
    /// filesystem, else the path bound (in the root's namespace). `earlier`: the entries made
    /// before it, with the path each is at.
    static func source(_ e: Img_MntEntry, earlier: [(entry: Img_MntEntry, at: String)], host: [ProcMount], images: ImageDirectory,
                       externals: [String: String]) throws -> String? {
        func fail(_ why: String) -> NamespaceError {
            NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID) at \(e.mountpoint) (\(e.fsname) from \(e.source)) \(why)")
        }
        if e.extMount {
            guard let path = externals[e.extKey] else { throw fail("is external with key \(e.extKey): restore needs --external mnt[\(e.extKey)]:PATH") }
            guard access(path, F_OK) == 0 else { throw fail("is external \(e.extKey), mapped to \(path), which does not exist") }
            return externalSource(e, path: path, host: host)
        }
        if let src = earlier.filter({ $0.entry.rootDev == e.rootDev && isUnder(e.root, $0.entry.root) }).min(by: { $0.entry.root.count < $1.entry.root.count }) {
            let below = sub(e.root, below: src.entry.root)
            return src.at + (below == "/" ? "" : below)
        }
        // A tmpfs comes back with its contents only: without them it was not the tree's own.
        if fresh.contains(e.fsname) && e.root == "/" && (e.fsname != "tmpfs" || images.store.exists(tmpfsImage(e.rootDev))) { return nil }
        if let h = host.filter({ MountNamespace.dev($0) == e.rootDev && isUnder(e.root, $0.root) }).min(by: { $0.root.count < $1.root.count }) {
            let below = sub(e.root, below: h.root)
            return (h.mountPoint == "/" ? "" : h.mountPoint) + (below == "/" ? "" : below)
        }
        throw fail("is not in cryo's namespace here and cannot be made")
    }

    /// Mounts made by syscalls injected into the restored root, inside its mount namespace.
    final class Maker {
        let root: RestoreTarget
        let page: UInt64
        let images: ImageDirectory

        init(root: RestoreTarget, images: ImageDirectory) throws {
            self.root = root
            self.images = images
            page = try root.remote.syscall(.mmap, 0, 8192, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
        }

        func close() { _ = try? root.remote.syscall(.munmap, page, 8192) }

        func put(_ s: String, _ slot: UInt64) throws -> UInt64 {
            guard s.utf8.count < 2000 else { throw NamespaceError.restore(kind: "mnt", reason: "path too long: \(s.prefix(64))...") }
            try root.remote.writeMemory(Array(s.utf8) + [0], at: page + slot * 2048)
            return page + slot * 2048
        }

        func mount(_ e: Img_MntEntry, src: String?, at target: String, type: String?, flags: UInt64, data: String?) throws {
            let s = try src.map { try put($0, 0) } ?? 0, t = try put(target, 1), ty = try type.map { try put($0, 2) } ?? 0
            let d = try data.map { try put($0, 3) } ?? 0
            do { try root.remote.syscall(.mount, s, t, ty, flags, d) } catch {
                throw NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID) at \(e.mountpoint) (\(e.fsname) from \(e.source)): mount(\(src ?? "none"), \(target), \(type ?? "-"), 0x\(String(flags, radix: 16)), \(data ?? "")): \(error)")
            }
        }

        /// One mount at `target`, private: bound from `source`, or made afresh (a tmpfs
        /// refilled), then its flags.
        func make(_ e: Img_MntEntry, at target: String, source: String?) throws {
            let flags = UInt64(e.flags & perMountFlags)
            if let source {
                try mount(e, src: source, at: target, type: nil, flags: 0x1000 /* MS_BIND */, data: nil)
                // A bind takes its source's flags; the dumped ones are set again.
                try mount(e, src: nil, at: target, type: nil, flags: 0x1000 | 0x20 /* MS_BIND|MS_REMOUNT */ | flags, data: nil)
            } else {
                var data = e.options.split(separator: ",").filter { $0 != "rw" && $0 != "ro" }.joined(separator: ",")
                // uid=/gid= are shown as cryo sees them and read by mount(2) as the root does.
                if let users = try UserIdMaps.of(pid: root.pid, proc: ProcReader()) { data = try users.insideMountOptions(data, mount: e.mountpoint) }
                let src = e.source.isEmpty ? e.fsname : e.source
                let filled = e.fsname == "tmpfs" && images.store.exists(tmpfsImage(e.rootDev))
                // A read-only tmpfs is filled first, then made read-only.
                try mount(e, src: src, at: target, type: e.fsname, flags: filled ? flags & ~1 : flags, data: data.isEmpty ? nil : data)
                if filled {
                    let tar = try images.store.read(tmpfsImage(e.rootDev))
                    // Through an fd: tar unquotes backslashes in a --directory path.
                    let dir = open("/proc/\(root.pid)/root" + target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                    guard dir >= 0 else { throw SystemCallError(call: "open", errno: errno, context: "tmpfs \(e.mountpoint) of the restored tree") }
                    defer { Glibc.close(dir) }
                    _ = try Tar.run(["--extract", "--gzip", "--numeric-owner", "--preserve-permissions", "--xattrs", "--acls", "--directory", "/proc/\(getpid())/fd/\(dir)", "--file", "-"],
                                    input: tar, what: "tmpfs \(e.mountpoint) (\(tmpfsImage(e.rootDev)))")
                    if flags & 1 != 0 { try mount(e, src: nil, at: target, type: nil, flags: 0x20 /* MS_REMOUNT */ | flags, data: data.isEmpty ? nil : data) }
                }
            }
            // Propagation comes last, once every mount is in place (MountPropagation).
        }
    }

    /// Builds the tree in `root`'s new mount namespace (a private copy of cryo's, where host
    /// paths still resolve), then pivots into it. Returns how cryo reaches the tree's files.
    static func build(_ entries: [Img_MntEntry], root: RestoreTarget, images: ImageDirectory, rootPath: String?, externals: [String: String]) throws -> String {
        let order = ordered(entries, id: { Int32(bitPattern: $0.mntID) }, parent: { Int32(bitPattern: $0.parentMntID) })
        guard let top = order.first else { throw NamespaceError.restore(kind: "mnt", reason: "no mounts in the images") }
        guard let rootPath else {
            throw NamespaceError.restore(kind: "mnt", reason: "the tree's root mount \(top.mntID) (\(top.fsname) from \(top.source), root \(top.root)) is not cryo's; give its filesystem with --root PATH (CRIU's)")
        }
        let host = try ProcReader().mountinfo(pid: getpid())
        let maker = try Maker(root: root, images: images)
        defer { maker.close() }
        // Nothing made here may reach cryo's namespace.
        try maker.mount(top, src: nil, at: "/", type: nil, flags: 0x4000 | 0x40000 /* MS_REC|MS_PRIVATE */, data: nil)
        let base = rootPath.hasSuffix("/") && rootPath != "/" ? String(rootPath.dropLast()) : rootPath
        var handles: [UInt32: Int32] = [:]
        defer { for h in handles.values { close(h) } }
        func made(_ e: Img_MntEntry, at target: String) throws {
            if e.sharedID != 0 || e.masterID != 0 { handles[e.mntID] = try MountPropagation.handle(pid: root.pid, path: target) }
        }
        try maker.make(top, at: base, source: base)
        try made(top, at: base)
        var earlier: [(entry: Img_MntEntry, at: String)] = []
        for e in order.dropFirst() {
            let target = base + e.mountpoint
            try maker.make(e, at: target, source: try source(e, earlier: earlier, host: host, images: images, externals: externals))
            try made(e, at: target)
            earlier.append((e, target))
        }
        // pivot_root(".", "."): the old root stacks on the new one and is detached.
        do {
            let r = root.remote
            try r.syscall(.chdir, try maker.put(base, 0))
            let dot = try maker.put(".", 1)
            try r.syscall(.pivotRoot, dot, dot)
            try r.syscall(.umount2, dot, 2 /* MNT_DETACH */)
            try r.syscall(.chdir, try maker.put("/", 0))
        } catch {
            throw NamespaceError.restore(kind: "mnt", reason: "pivot_root into \(base): \(error)")
        }
        // After pivot_root, which refuses a shared root. A master outside the tree is copied
        // from where the mount came: --root for the root, else the external mount's path.
        try MountPropagation.restore(order, handles: handles, pid: root.pid) { e in
            if e.mntID == top.mntID { return MountPropagation.mountRoot(of: base, in: host) }
            guard let ext = order.first(where: { $0.extMount && $0.rootDev == e.rootDev && isUnder(e.root, $0.root) }), let path = externals[ext.extKey] else {
                throw NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID) at \(e.mountpoint): a slave of group \(e.masterID) outside the tree, neither the root nor bound from an external mount")
            }
            return MountPropagation.mountRoot(of: path, in: host)
        }
        return "/proc/\(root.pid)/root"
    }
}

/// The work of `MountTree.inMountNamespace` and its outcome, handed to the thread and back.
private final class MountNamespaceJob<T>: @unchecked Sendable {
    let body: () throws -> T
    var r: Result<T, Error>?
    init(_ body: @escaping () throws -> T) { self.body = body }
}

/// /bin/tar, for tmpfs contents (CRIU uses tar as well).
enum Tar {
    static func run(_ args: [String], input: [UInt8]? = nil, what: String) throws -> [UInt8] {
        let candidates: [String] = ["/usr/bin/tar", "/bin/tar"]
        guard let path = candidates.first(where: { p in access(p, X_OK) == 0 }) else {
            throw NamespaceError.restore(kind: "mnt", reason: "\(what): no tar installed")
        }
        // tar's complaints go to cryo's stderr; its output (an archive on --create) is kept.
        let (st, out) = try Spawn.run(path, args, input: input ?? [], mergeStderr: false)
        guard st == 0 else { throw NamespaceError.restore(kind: "mnt", reason: "\(what): tar \(args.first ?? "") exited with status \(st)") }
        return out
    }
}
