import Foundation
import Glibc

/// A mount namespace (CRIU's mountpoints-ID.img, one MntEntry per mount). Two shapes:
/// - the tree's root mount is cryo's (zdtm's ns flavour: a private copy of the host's): the
///   namespace comes back as a copy of cryo's, made private, less the mounts of cryo's the tree
///   lacks, plus the proc mounts it added (mounted from inside, for the restored pid
///   namespace); any other added mount, and shared or slave propagation, is refused by name;
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
        for m in theirs {
            if m.sharedGroup != nil || m.masterGroup != nil {
                throw NamespaceError.unsupported(pid: pid, kind: "mnt", inode: try proc.namespaceInode(pid: pid, kind: "mnt"),
                    reason: "mount \(m.mountId) at \(m.mountPoint) has \(m.optionalFields.joined(separator: " ")) propagation; cryo restores private mounts only")
            }
            if !ours.contains(key(m)) && m.fsType != "proc" {
                throw NamespaceError.unsupported(pid: pid, kind: "mnt", inode: try proc.namespaceInode(pid: pid, kind: "mnt"),
                    reason: "mount \(m.mountId) at \(m.mountPoint) (\(m.fsType) from \(m.source)) cannot be restored yet (only proc is mounted again)")
            }
            entries.append(entry(m))
        }
        try images.write(.mnts, id: Int(id), entries: entries)
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        guard images.exists(.mnts, Int(id)) else {
            throw NamespaceError.restore(kind: "mnt", reason: "no \(ImageKind.mnts.fileName(Int(id)))")
        }
        if try isOwnTree(id: id, images: images) { return }  // checked as it is built
        let ours = Set(try ProcReader().mountinfo(pid: getpid()).map(key))
        for e in try images.read(.mnts, id: Int(id), as: Img_MntEntry.self) where !ours.contains(key(e)) && e.fsname != "proc" {
            throw NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID) at \(e.mountpoint) (\(e.fsname) from \(e.source)) is not in cryo's namespace here and cannot be made")
        }
    }

    /// Injected into the root (in the new mount and pid namespaces): everything private first,
    /// so nothing mounted here reaches cryo's namespace, then each missing mount, parents first.
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {
        if try isOwnTree(id: id, images: images) { return }  // built before the tasks
        let r = root.remote
        let ours = Set(try ProcReader().mountinfo(pid: getpid()).map(key))
        let page = try r.syscall(.mmap, 0, 4096, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64(bitPattern: -1), 0)
        defer { _ = try? r.syscall(.munmap, page, 4096) }
        func put(_ s: String, at off: UInt64) throws -> UInt64 {
            try r.writeMemory(Array(s.utf8.prefix(1000)) + [0], at: page + off)
            return page + off
        }
        let slash = try put("/", at: 0)
        try r.syscall(.mount, 0, slash, 0, 0x4000 /* MS_REC */ | 0x40000 /* MS_PRIVATE */, 0)
        let entries = try images.read(.mnts, id: Int(id), as: Img_MntEntry.self)
        // Mounts of cryo's the tree did not have (made on the host since, or unmounted by the
        // tree) go, newest first; one under a mount already gone went with it (EINVAL).
        let wanted = Set(entries.map(key))
        for m in try ProcReader().mountinfo(pid: root.pid).sorted(by: { $0.mountId > $1.mountId }) where !wanted.contains(key(m)) {
            do { try r.syscall(.umount2, try put(m.mountPoint, at: 16), 2 /* MNT_DETACH */) } catch RemoteError.syscallFailed(_, _, let e) where e == EINVAL || e == ENOENT {}
        }
        for e in entries.sorted(by: { $0.mntID < $1.mntID }) where !ours.contains(key(e)) {
            guard e.fsname == "proc" else {
                throw NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID) at \(e.mountpoint) (\(e.fsname)) cannot be made")
            }
            let target = try put(e.mountpoint, at: 16), type = try put("proc", at: 1040)
            let keep = e.flags & (1 | 2 | 4 | 8 | 1024 | 2048 | (1 << 21))
            do { try r.syscall(.mount, type, target, type, UInt64(keep), 0) } catch {
                throw NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID): proc at \(e.mountpoint): \(error)")
            }
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
