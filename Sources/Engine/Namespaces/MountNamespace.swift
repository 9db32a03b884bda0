import Foundation
import Glibc

/// A mount namespace (CRIU's mountpoints-ID.img, one MntEntry per mount). Two shapes:
/// - the tree's root mount is cryo's (zdtm's ns flavour: a private copy of the host's): the
///   namespace comes back as a copy of cryo's, made private, less the mounts of cryo's the tree
///   lacks, plus the mounts it added (MountTree's kinds), with their propagation
///   (MountPropagation);
/// - the tree pivoted into a root of its own (a container): every mount is dumped and rebuilt
///   under `--root`, then pivoted into (MountTree).
enum MountNamespace: NamespaceContents {
    static let kind = NamespaceKind.mnt

    /// CRIU's fstype numbers for the kinds cryo names (others are written as UNSUPPORTED, 0).
    static let fstypes: [String: UInt32] = ["proc": 1, "sysfs": 2, "devtmpfs": 3, "binfmt_misc": 4, "tmpfs": 5, "devpts": 6,
                                            "securityfs": 9, "fusectl": 10, "debugfs": 11, "cgroup": 12, "mqueue": 14,
                                            "overlay": 17, "autofs": 18, "tracefs": 19, "cgroup2": 23]

    /// How a mount is recognised in another namespace: the same filesystem, root and place.
    struct Key: Hashable {
        let mountPoint, root, fsType, source: String
        let dev: UInt32
    }
    /// The kernel's device encoding (MKDEV), as CRIU writes root_dev.
    static func dev(_ m: ProcMount) -> UInt32 { m.devMajor << 20 | m.devMinor }
    static func key(_ m: ProcMount) -> Key {
        Key(mountPoint: m.mountPoint, root: m.root, fsType: m.fsType, source: m.source, dev: dev(m))
    }
    static func key(_ e: Img_MntEntry) -> Key {
        Key(mountPoint: e.mountpoint, root: e.root, fsType: e.fsname, source: e.source, dev: e.rootDev)
    }

    /// MS_* per-mount flags from mountinfo's per-mount options.
    static func flags(_ m: ProcMount) -> UInt32 {
        var f: UInt32 = 0
        for o in m.optionList {
            switch o {
            case "ro": f |= 1
            case "nosuid": f |= 2
            case "nodev": f |= 4
            case "noexec": f |= 8
            case "noatime": f |= 1024
            case "nodiratime": f |= 2048
            case "relatime": f |= 1 << 21
            default: break
            }
        }
        // mountinfo names relatime and noatime; neither means strictatime.
        if f & (1024 | (1 << 21)) == 0 { f |= 1 << 24 }
        return f
    }

    /// The root mount of a mountinfo: the one whose parent is not listed.
    static func rootMount(_ ms: [ProcMount]) -> ProcMount? {
        let ids = Set(ms.map(\.mountId))
        return ms.first { !ids.contains($0.parentId) }
    }

    /// Images of a tree that pivoted into a root of its own (rebuilt by MountTree), not a copy
    /// of cryo's namespace.
    static func isOwnTree(id: UInt32, images: ImageDirectory) throws -> Bool {
        let entries = try images.read(.mnts, id: Int(id), as: Img_MntEntry.self)
        let ids = Set(entries.map(\.mntID))
        guard let top = entries.first(where: { !ids.contains($0.parentMntID) }) else { return false }
        return !Set(try ProcReader().mountinfo(pid: getpid()).map(key)).contains(key(top))
    }

    /// The mount ids of `pid`'s namespace when its root mount is not cryo's (MountTree), else nil.
    static func ownTreeMountIDs(pid: Int32, proc: ProcReader) throws -> Set<Int32>? {
        let theirs = try proc.mountinfo(pid: pid)
        guard let top = rootMount(theirs), !Set(try proc.mountinfo(pid: getpid()).map(key)).contains(key(top)) else { return nil }
        return Set(theirs.map(\.mountId))
    }

    static func entry(_ m: ProcMount) -> Img_MntEntry {
        var e = Img_MntEntry()
        e.fstype = fstypes[m.fsType] ?? 0
        e.fsname = m.fsType
        e.mntID = UInt32(bitPattern: m.mountId)
        e.parentMntID = UInt32(bitPattern: m.parentId)
        e.rootDev = dev(m)
        e.flags = flags(m)
        e.root = m.root
        e.mountpoint = m.mountPoint
        e.source = m.source
        e.options = m.superOptions
        if let g = m.sharedGroup { e.sharedID = UInt32(g) }
        if let g = m.masterGroup { e.masterID = UInt32(g) }
        return e
    }

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        let theirs = try proc.mountinfo(pid: pid)
        let ours = Set(try proc.mountinfo(pid: getpid()).map(key))
        if let top = rootMount(theirs), !ours.contains(key(top)) {
            try images.write(.mnts, id: Int(id), entries: try MountTree.dump(theirs, pid: pid, images: images, proc: proc, externals: externals))
            return
        }
        var entries: [Img_MntEntry] = []
        let host = try proc.mountinfo(pid: getpid())
        var earlier: [ProcMount] = []
        let inode = try proc.namespaceInode(pid: pid, kind: "mnt")
        if let (m, o) = MountTree.overmounted(theirs, among: theirs.filter { !ours.contains(key($0)) }) {
            throw NamespaceError.unsupported(pid: pid, kind: "mnt", inode: inode,
                reason: "mount \(m.mountId) at \(m.mountPoint) is hidden by mount \(o.mountId) at \(o.mountPoint), made over its path: cryo restores mounts by path")
        }
        for m in MountTree.ordered(theirs, id: \.mountId, parent: \.parentId) {
            // A mount the tree added: bound from one before it, made afresh, or bound from the host.
            if !ours.contains(key(m)) {
                if m.isUnbindable {
                    throw NamespaceError.unsupported(pid: pid, kind: "mnt", inode: try proc.namespaceInode(pid: pid, kind: "mnt"),
                        reason: "mount \(m.mountId) at \(m.mountPoint) is unbindable, which cryo does not restore")
                }
                let bound = earlier.contains { dev($0) == dev(m) && MountTree.isUnder(m.root, $0.root) }
                let fresh = !bound && MountTree.fresh.contains(m.fsType) && m.root == "/"
                guard bound || fresh || host.contains(where: { dev($0) == dev(m) && MountTree.isUnder(m.root, $0.root) }) else {
                    throw NamespaceError.unsupported(pid: pid, kind: "mnt", inode: try proc.namespaceInode(pid: pid, kind: "mnt"),
                        reason: "mount \(m.mountId) at \(m.mountPoint) (\(m.fsType) from \(m.source), root \(m.root)) cannot be restored: neither a filesystem cryo makes afresh nor a bind of a mount it can find")
                }
                if fresh && m.superOptionList.contains("ro") && !m.isReadOnly {
                    throw NamespaceError.unsupported(pid: pid, kind: "mnt", inode: try proc.namespaceInode(pid: pid, kind: "mnt"),
                        reason: "mount \(m.mountId) at \(m.mountPoint) (\(m.fsType)) is read-write on a read-only superblock")
                }
                if fresh && m.fsType == "tmpfs" { try MountTree.dumpTmpfs(m, pid: pid, images: images) }
            }
            earlier.append(m)
            entries.append(entry(m))
        }
        // A slave of a group outside the tree copies its master from cryo's mount of that group.
        try MountPropagation.check(theirs, outside: host, reachable: { m in
            host.contains { $0.sharedGroup == m.masterGroup && dev($0) == dev(m) && MountTree.isUnder(m.root, $0.root) }
        }, refuse: { m, why in
            NamespaceError.unsupported(pid: pid, kind: "mnt", inode: inode, reason: "mount \(m.mountId) at \(m.mountPoint) (\(m.fsType) from \(m.source), root \(m.root)) \(why)")
        })
        try images.write(.mnts, id: Int(id), entries: entries)
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        guard images.exists(.mnts, Int(id)) else {
            throw NamespaceError.restore(kind: "mnt", reason: "no \(ImageKind.mnts.fileName(Int(id)))")
        }
        if try isOwnTree(id: id, images: images) { return }  // checked as it is built
        _ = try added(id: id, images: images)
    }

    /// The copy's entries in order, each with where it comes from: nil when it is in cryo's
    /// namespace already, else (made afresh or bound from) as MountTree.source says, which
    /// refuses a mount that cannot be made here.
    static func added(id: UInt32, images: ImageDirectory) throws -> [(entry: Img_MntEntry, made: Bool, source: String?)] {
        let host = try ProcReader().mountinfo(pid: getpid())
        let ours = Set(host.map(key))
        let entries = try images.read(.mnts, id: Int(id), as: Img_MntEntry.self)
        var earlier: [(entry: Img_MntEntry, at: String)] = []
        var out: [(entry: Img_MntEntry, made: Bool, source: String?)] = []
        for e in MountTree.ordered(entries, id: { Int32(bitPattern: $0.mntID) }, parent: { Int32(bitPattern: $0.parentMntID) }) {
            if ours.contains(key(e)) {
                out.append((e, false, nil))
            } else {
                out.append((e, true, try MountTree.source(e, earlier: earlier, host: host, images: images, externals: [:])))
            }
            earlier.append((e, e.mountpoint))
        }
        return out
    }

    /// Injected into the root (in the new mount and pid namespaces): everything private first,
    /// so nothing mounted here reaches cryo's namespace, then each missing mount, parents first.
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {
        if try isOwnTree(id: id, images: images) { return }  // built before the tasks
        let plan = try added(id: id, images: images)
        let maker = try MountTree.Maker(root: root, images: images)
        defer { maker.close() }
        try maker.mount(plan[0].entry, src: nil, at: "/", type: nil, flags: 0x4000 | 0x40000 /* MS_REC|MS_PRIVATE */, data: nil)
        // Mounts of cryo's the tree did not have (made on the host since, or unmounted by the
        // tree) go, newest first; one under a mount already gone went with it (EINVAL).
        let wanted = Set(plan.map { key($0.entry) })
        for m in try ProcReader().mountinfo(pid: root.pid).sorted(by: { $0.mountId > $1.mountId }) where !wanted.contains(key(m)) {
            do { try root.remote.syscall(.umount2, try maker.put(m.mountPoint, 1), 2 /* MNT_DETACH */) } catch RemoteError.syscallFailed(_, _, let e) where e == EINVAL || e == ENOENT {}
        }
        // Mounts already here are reached before any is made over them; a covered one is not.
        var handles: [UInt32: Int32] = [:]
        defer { for h in handles.values { close(h) } }
        let propagating = { (e: Img_MntEntry) in e.sharedID != 0 || e.masterID != 0 }
        for p in plan where !p.made && propagating(p.entry) {
            if let over = plan.first(where: { !$0.made && $0.entry.parentMntID == p.entry.mntID && $0.entry.mountpoint == p.entry.mountpoint }) {
                throw NamespaceError.restore(kind: "mnt", reason: "mount \(p.entry.mntID) at \(p.entry.mountpoint) has propagation but is covered by mount \(over.entry.mntID): cryo cannot reach it")
            }
            handles[p.entry.mntID] = try MountPropagation.handle(pid: root.pid, path: p.entry.mountpoint)
        }
        // Proc is made from inside, for the restored pid namespace; the rest as MountTree does.
        for p in plan where p.made {
            try maker.make(p.entry, at: p.entry.mountpoint, source: p.source)
            if propagating(p.entry) { handles[p.entry.mntID] = try MountPropagation.handle(pid: root.pid, path: p.entry.mountpoint) }
        }
        try MountPropagation.restore(plan.map(\.entry), handles: handles, pid: root.pid) { e in
            guard let h = try ProcReader().mountinfo(pid: getpid()).first(where: {
                $0.sharedGroup.map(UInt32.init) == e.masterID && dev($0) == e.rootDev && MountTree.isUnder(e.root, $0.root)
            }) else {
                throw NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID) at \(e.mountpoint) was a slave of peer group \(e.masterID) of cryo's namespace, which has no such shared mount here")
            }
            return h.mountPoint
        }
    }
}

extension MountNamespace {
    /// A tree of its own is built right after the root exists, before any file is opened;
    /// cryo then reaches the tree's files through the root's /proc/PID/root.
    static func build(id: UInt32, root: RestoreTarget, images: ImageDirectory, request: RestoreRequest) throws -> String? {
        guard try isOwnTree(id: id, images: images) else { return nil }
        return try MountTree.build(try images.read(.mnts, id: Int(id), as: Img_MntEntry.self), root: root, images: images,
                                   rootPath: request.root, externals: try Externals(parsing: request.external).mounts)
    }
}
