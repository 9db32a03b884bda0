import Foundation

/// A cgroup namespace of the tree's own. It holds nothing but its root in each hierarchy,
/// which the dump writes into cgroup.img as CRIU does (CgMemberEntry.cgns_prefix, by
/// CgroupCollector). The restore makes it as CRIU's prepare_cgns: the root task goes to the
/// namespace's root cgroups, unshares CLONE_NEWCGROUP there (injected), then goes into its own
/// cgroups; its children are forked inside. See docs/NAMESPACES.md.
enum CgroupNamespace: NamespaceContents {
    static let kind = NamespaceKind.cgroup

    /// Nothing of its own: the roots are in cgroup.img (the dump refuses --manage-cgroups=ignore).
    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {}

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        guard images.exists(.cgroup) else {
            throw NamespaceError.restore(kind: "cgroup", reason: "no \(ImageKind.cgroup.fileName(nil)): the roots of the tree's cgroup namespace (id \(id)) are not in the images")
        }
    }

    /// Before the root exists: without cgroup.img's sets the namespace's root is unknown.
    static func enter(id: UInt32, images: ImageDirectory, request: RestoreRequest) throws -> (any NamespaceHold)? {
        guard request.manageCgroups != .ignore else {
            throw NamespaceError.restore(kind: "cgroup", reason: "--manage-cgroups=ignore leaves the tree in cryo's cgroups, but its cgroup namespace (id \(id)) is rooted in its own")
        }
        return nil
    }

    /// The root exists, nothing forked from it yet: it makes the namespace where it was rooted.
    static func build(id: UInt32, root: RestoreTarget, images: ImageDirectory, request: RestoreRequest) throws -> String? {
        guard let cgroups = try CgroupRestore(images: images, mode: request.manageCgroups) else { return nil }
        let set = try images.readOne(.core, id: Int(root.vpid), as: Img_CoreEntry.self).tc.cgSet
        guard set != 0 else {
            throw NamespaceError.restore(kind: "cgroup", reason: "the tree's root \(root.vpid) has no cgroup set in its core image, so its cgroup namespace's root is unknown")
        }
        try cgroups.enterNamespace(pid: root.pid, set: set) {
            _ = try root.remote.syscall(.unshare, NamespaceKind.cgroup.cloneFlag)
        }
        return nil
    }

    /// Made before the tasks (build).
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {}
}
