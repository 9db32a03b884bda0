import Foundation

/// One namespace kind's contents (hostname, SysV objects, mounts, uid maps...): how they are
/// written at dump and rebuilt at restore, once the tree's root lives in a new namespace of
/// that kind. Adding a kind is one type in its own file, listed in `NamespaceContentsKinds.all`.
protocol NamespaceContents {
    static var kind: NamespaceKind { get }
    /// Writes the images of namespace `id`, read through `pid` (a host pid inside it); throws
    /// NamespaceError to refuse what cannot be restored.
    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader) throws
    /// Rebuilds namespace `id` from its images; `root` is the restored tree's root, already
    /// inside the new namespace, stopped and traced, before any of its own state is rebuilt
    /// (work that must happen inside, such as mounting proc for its pid namespace, is injected).
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws
    /// Restore, before any task exists: refuses namespace `id` if its images are missing or
    /// cannot be rebuilt here (external ones, no such images, a machine without the feature).
    static func check(id: UInt32, images: ImageDirectory) throws
}

enum NamespaceContentsKinds {
    static let all: [any NamespaceContents.Type] = [PidNamespaceContents.self, UtsNamespace.self, IpcNamespace.self, NetNamespace.self, MountNamespace.self]
    static func of(_ k: NamespaceKind) -> (any NamespaceContents.Type)? { all.first { $0.kind == k } }
}
