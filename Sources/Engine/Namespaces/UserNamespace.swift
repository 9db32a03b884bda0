import Foundation
import Glibc

/// A user namespace: its uid and gid maps (CRIU's userns-ID.img). Restore clones the root
/// straight into a new one (with the tree's other new namespaces, which it then owns) and
/// writes the maps from cryo, the parent namespace, before the root runs any code of the tree.
enum UserNamespace: NamespaceContents {
    static let kind = NamespaceKind.user

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        let inode = try proc.namespaceInode(pid: pid, kind: "user")
        // CRIU's image has no place for it; a new namespace written by root allows setgroups.
        if try proc.setgroups(pid: pid) != "allow" {
            throw NamespaceError.unsupported(pid: pid, kind: "user", inode: inode, reason: "setgroups is \"deny\", which CRIU's userns image cannot hold")
        }
        var e = Img_UsernsEntry()
        e.uidMap = try proc.idMap(pid: pid, "uid_map").map(\.image)
        e.gidMap = try proc.idMap(pid: pid, "gid_map").map(\.image)
        guard !e.uidMap.isEmpty, !e.gidMap.isEmpty else {
            throw NamespaceError.unsupported(pid: pid, kind: "user", inode: inode, reason: "no uid or gid map written: its ids mean nothing outside")
        }
        try images.write(.userns, id: Int(id), entry: e)
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        guard images.exists(.userns, Int(id)) else {
            throw NamespaceError.restore(kind: "user", reason: "no \(ImageKind.userns.fileName(Int(id))) (a namespace dumped as external cannot be restored yet)")
        }
    }

    /// Written in `mapped`, as soon as the root exists.
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {}

    /// The maps of the root's new user namespace, written by cryo (the parent namespace,
    /// where root may map any range) while the root is still stopped in cryo's code.
    static func writeMaps(id: UInt32, pid: Int32, images: ImageDirectory) throws {
        let e = try images.readOne(.userns, id: Int(id), as: Img_UsernsEntry.self)
        for (file, map) in [("uid_map", e.uidMap), ("gid_map", e.gidMap)] {
            let text = map.map { "\($0.first) \($0.lowerFirst) \($0.count)\n" }.joined()
            let path = "/proc/\(pid)/\(file)"
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, context: path) }
            defer { close(fd) }
            let bytes = Array(text.utf8)
            // The kernel takes a map in one write only.
            guard Glibc.write(fd, bytes, bytes.count) == bytes.count else {
                throw NamespaceError.restore(kind: "user", reason: "writing \(path) (\(text.split(separator: "\n").joined(separator: "; "))): \(String(cString: strerror(errno)))")
            }
        }
    }
}

extension IdExtent {
    var image: Img_UidGidExtent {
        var x = Img_UidGidExtent()
        x.first = first; x.lowerFirst = lowerFirst; x.count = count
        return x
    }
}

/// uids and gids of a task in a user namespace other than cryo's, between cryo's view
/// (/proc status) and the task's own: the images hold the task's (CRIU's CredsEntry is read
/// by the parasite, inside).
public struct UserIdMaps: Sendable {
    var uids: [IdExtent]
    var gids: [IdExtent]

    /// nil when the task shares cryo's user namespace: ids are the same on both sides.
    public static func of(pid: Int32, proc: ProcReader) throws -> UserIdMaps? {
        guard let mine = proc.namespaceInode(pid: getpid(), "user"), let theirs = proc.namespaceInode(pid: pid, "user"), mine != theirs else { return nil }
        return UserIdMaps(uids: try proc.idMap(pid: pid, "uid_map"), gids: try proc.idMap(pid: pid, "gid_map"))
    }

    static func inside(_ id: UInt32, _ map: [IdExtent]) -> UInt32? {
        for x in map where id >= x.lowerFirst && UInt64(id) < UInt64(x.lowerFirst) + UInt64(x.count) { return x.first + (id - x.lowerFirst) }
        return nil
    }

    /// cryo's view to the task's; an id the map lacks is refused by the caller, named.
    public func uidInside(_ id: UInt32) -> UInt32? { Self.inside(id, uids) }
    public func gidInside(_ id: UInt32) -> UInt32? { Self.inside(id, gids) }
}

extension UserIdMaps {
    /// Credentials read from /proc (cryo's view) as the task sees them.
    func inside(_ c: Img_CredsEntry, pid: Int32) throws -> Img_CredsEntry {
        var o = c
        func u(_ v: UInt32, _ what: String) throws -> UInt32 {
            guard let x = uidInside(v) else { throw NamespaceError.unsupported(pid: pid, kind: "user", inode: 0, reason: "\(what) \(v) is not in its namespace's uid map") }
            return x
        }
        func g(_ v: UInt32, _ what: String) throws -> UInt32 {
            guard let x = gidInside(v) else { throw NamespaceError.unsupported(pid: pid, kind: "user", inode: 0, reason: "\(what) \(v) is not in its namespace's gid map") }
            return x
        }
        o.uid = try u(c.uid, "uid"); o.euid = try u(c.euid, "euid"); o.suid = try u(c.suid, "suid"); o.fsuid = try u(c.fsuid, "fsuid")
        o.gid = try g(c.gid, "gid"); o.egid = try g(c.egid, "egid"); o.sgid = try g(c.sgid, "sgid"); o.fsgid = try g(c.fsgid, "fsgid")
        o.groups = try c.groups.map { try g($0, "supplementary group") }
        return o
    }
}

extension UserIdMaps {
    /// Mount options with uid=/gid= (tmpfs, devpts...) taken to the namespace's view.
    func insideMountOptions(_ data: String, mount: String) throws -> String {
        try data.split(separator: ",").map { o -> String in
            for (key, map) in [("uid=", uids), ("gid=", gids)] where o.hasPrefix(key) {
                guard let v = UInt32(o.dropFirst(key.count)) else { return String(o) }
                guard let x = Self.inside(v, map) else {
                    throw NamespaceError.restore(kind: "mnt", reason: "mount at \(mount): option \(o) is not in the tree's user namespace's map")
                }
                return key + String(x)
            }
            return String(o)
        }.joined(separator: ",")
    }
}
