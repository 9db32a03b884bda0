import Foundation

/// A pid namespace has no contents of its own to write: its processes are the tree, with the
/// pids they have inside it (PidMap). The tree's root must be the namespace's init, so the
/// whole namespace is the tree; the restore makes it init again (clone3 CLONE_NEWPID, set_tid
/// 1) and every other task with its pid there (set_tid from inside its parent).
enum PidNamespaceContents: NamespaceContents {
    static let kind = NamespaceKind.pid

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        let inner = try proc.status(pid: pid).nsPid.last ?? 0
        guard inner == 1 else {
            throw NamespaceError.unsupported(pid: pid, kind: "pid", inode: try proc.namespaceInode(pid: pid, kind: "pid"),
                reason: "the tree's root is pid \(inner) there, not the namespace's init (1): dump from the init so the whole namespace is the tree")
        }
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {}
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {}
}
