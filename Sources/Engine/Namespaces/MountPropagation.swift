import CKernel
import Foundation
import Glibc

/// Shared, slave and private propagation of a mount tree, rebuilt as CRIU's mount-v2 does:
/// every mount is made private, then each peer group is joined again with
/// move_mount(MOVE_MOUNT_SET_GROUP) from its widest member, and slaves get their master's
/// group copied before MS_SLAVE. Nothing propagates while the tree is built, so no mount is
/// made twice; the group numbers are the kernel's new ones, the graph the dumped one.
enum MountPropagation {
    /// Mounts with the same (shared, master) pair: CRIU's sharing group.
    struct Group: Equatable {
        let shared: UInt32, master: UInt32
        var members: [Img_MntEntry]
        /// The member whose root holds the others' (MOVE_MOUNT_SET_GROUP copies from wider to narrower).
        var first: Img_MntEntry { members.min { $0.root.count < $1.root.count }! }
    }

    // MARK: dump

    /// Refuses, naming the mount, propagation a restore cannot make again. `outside`: the
    /// mounts of cryo's namespace; `reachable`: whether a slave of a group outside the tree has
    /// a master the restore can copy (an external mount, the root, a mount of cryo's).
    static func check(_ mounts: [ProcMount], outside: [ProcMount], reachable: (ProcMount) -> Bool,
                      refuse: (ProcMount, String) -> Error) throws {
        let outsideShared = Set(outside.compactMap(\.sharedGroup))
        let treeShared = Set(mounts.compactMap(\.sharedGroup))
        for m in mounts {
            if let s = m.sharedGroup {
                if outsideShared.contains(s) {
                    throw refuse(m, "is a peer of group \(s) of cryo's namespace: mounts propagate between the tree and outside it, which cryo does not restore (make it private or a slave)")
                }
                let peers = mounts.filter { $0.sharedGroup == s && $0.masterGroup == m.masterGroup }
                let widest = peers.min { $0.root.count < $1.root.count }!
                if !MountTree.isUnder(m.root, widest.root) {
                    throw refuse(m, "is in peer group \(s) with mount \(widest.mountId) at \(widest.mountPoint), whose root \(widest.root) does not hold its root: the kernel cannot join them again")
                }
            }
            if let master = m.masterGroup, !treeShared.contains(master), !reachable(m) {
                throw refuse(m, "is a slave of peer group \(master) outside the tree, with no master cryo can reach at restore; name it, or a mount it is bound from, --external mnt[MOUNTPOINT]:KEY, or make it private")
            }
        }
    }

    // MARK: restore

    private static let oPath: Int32 = 0o10000000  // O_PATH, which Glibc's module does not export

    /// The groups of a tree (entries parents first), each master's group before its slaves'.
    static func groups(_ entries: [Img_MntEntry]) -> [Group] {
        var all: [Group] = []
        for e in entries where e.sharedID != 0 || e.masterID != 0 {
            if let i = all.firstIndex(where: { $0.shared == e.sharedID && $0.master == e.masterID }) {
                all[i].members.append(e)
            } else {
                all.append(Group(shared: e.sharedID, master: e.masterID, members: [e]))
            }
        }
        let treeShared = Set(all.map(\.shared).filter { $0 != 0 })
        var done = Set<UInt32>(), out: [Group] = []
        var left = all
        while !left.isEmpty {
            let ready = left.filter { $0.master == 0 || !treeShared.contains($0.master) || done.contains($0.master) }
            // A cycle of masters cannot exist in a kernel's tree; take the rest as they come.
            let take = ready.isEmpty ? left : ready
            out += take
            for g in take where g.shared != 0 { done.insert(g.shared) }
            left.removeAll { g in take.contains(g) }
        }
        return out
    }

    /// An O_PATH fd (cryo's) of the mount at `path` in `pid`'s mount namespace, taken right
    /// after the mount is made, before anything covers it.
    static func handle(pid: Int32, path: String) throws -> Int32 {
        let p = "/proc/\(pid)/root" + (path == "/" ? "" : path)
        let fd = open(p, oPath | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(call: "open(O_PATH)", errno: errno, context: p) }
        return fd
    }

    /// The mountpoint in cryo's namespace of the mount holding `path` (MOVE_MOUNT_SET_GROUP
    /// copies from a mount's root).
    static func mountRoot(of path: String, in host: [ProcMount]) -> String {
        let real = realpath(path, nil).map { p in defer { free(p) }; return String(cString: p) } ?? path
        return host.filter { MountTree.isUnder(real, $0.mountPoint) }.max { $0.mountPoint.count < $1.mountPoint.count }?.mountPoint ?? real
    }

    /// Joins the groups again. `handles`: cryo's fd of each mount with propagation, by dumped
    /// mount id; `outside(e)`: the path in cryo's namespace of a mount of `e`'s master group
    /// when that group is not the tree's.
    static func restore(_ entries: [Img_MntEntry], handles: [UInt32: Int32], pid: Int32, outside: (Img_MntEntry) throws -> String) throws {
        let gs = groups(entries)
        guard !gs.isEmpty else { return }
        func fail(_ e: Img_MntEntry, _ why: String) -> NamespaceError {
            NamespaceError.restore(kind: "mnt", reason: "mount \(e.mntID) at \(e.mountpoint) (\(e.fsname) from \(e.source)): \(why)")
        }
        func fd(_ e: Img_MntEntry) throws -> Int32 {
            guard let h = handles[e.mntID] else { throw fail(e, "no handle to restore its propagation") }
            return h
        }
        let treeShared = Set(gs.map(\.shared).filter { $0 != 0 })
        // Masters outside the tree are opened in cryo's own namespace, before the thread leaves it.
        var sources: [UInt32: (fd: Int32, path: String)] = [:]
        defer { for s in sources.values { close(s.fd) } }
        for g in gs where g.master != 0 && !treeShared.contains(g.master) {
            for e in g.members where e.mntID == g.first.mntID || !MountTree.isUnder(e.root, g.first.root) {
                let path = try outside(e)
                let f = open(path, oPath | O_CLOEXEC)
                guard f >= 0 else { throw fail(e, "its master group \(g.master) is outside the tree: open \(path): \(String(cString: strerror(errno)))") }
                sources[e.mntID] = (f, path)
            }
        }
        try MountTree.inMountNamespace(of: pid, what: "propagation") {
            func setGroup(from: Int32, _ fromName: String, to e: Img_MntEntry) throws {
                let to = try fd(e)
                let r = "".withCString { empty in
                    ck_syscall6(SyscallNumber.moveMount.rawValue, Int(from), Int(bitPattern: empty), Int(to), Int(bitPattern: empty),
                                0x100 | 0x4 | 0x40 /* MOVE_MOUNT_SET_GROUP|F_EMPTY_PATH|T_EMPTY_PATH */, 0)
                }
                if r < 0 { throw fail(e, "move_mount(MOVE_MOUNT_SET_GROUP) from \(fromName): \(String(cString: strerror(ck_errno())))") }
            }
            func propagation(_ e: Img_MntEntry, _ flag: UInt64) throws {
                let target = try fd(e)
                var attr: [UInt64] = [0, 0, flag, 0]  // struct mount_attr: attr_set, attr_clr, propagation, userns_fd
                let r = attr.withUnsafeMutableBytes { a in
                    "".withCString { empty in
                        ck_syscall6(SyscallNumber.mountSetattr.rawValue, Int(target), Int(bitPattern: empty), 0x1000 /* AT_EMPTY_PATH */,
                                    Int(bitPattern: a.baseAddress), 32, 0)
                    }
                }
                if r < 0 { throw fail(e, "mount_setattr(\(flag == 0x80000 ? "MS_SLAVE" : "MS_SHARED")): \(String(cString: strerror(ck_errno())))") }
            }
            func join(_ g: Group, _ e: Img_MntEntry) throws {
                if g.master != 0 {
                    if let m = gs.first(where: { $0.shared == g.master }) {
                        try setGroup(from: try fd(m.first), "mount \(m.first.mntID) of group \(g.master)", to: e)
                    } else if let s = sources[e.mntID] {
                        try setGroup(from: s.fd, s.path, to: e)
                    }
                    try propagation(e, 0x80000 /* MS_SLAVE */)
                }
                if g.shared != 0 { try propagation(e, 0x100000 /* MS_SHARED */) }
            }
            for g in gs {
                let first = g.first
                try join(g, first)
                for e in g.members where e.mntID != first.mntID {
                    if MountTree.isUnder(e.root, first.root) {
                        try setGroup(from: try fd(first), "mount \(first.mntID)", to: e)
                    } else if sources[e.mntID] != nil {
                        try join(g, e)
                    } else {
                        throw fail(e, "its root \(e.root) is not under \(first.root), the root of mount \(first.mntID) of its group")
                    }
                }
            }
        }
    }
}
