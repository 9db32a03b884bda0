import Foundation

/// One namespace kind's contents (hostname, SysV objects, mounts, links and routes...): how
/// they are written at dump and rebuilt at restore, once the tree's root lives in a new
/// namespace of that kind. Adding a kind is one type in its own file, listed in
/// `NamespaceContentsKinds.all`.
protocol NamespaceContents {
    static var kind: NamespaceKind { get }
    /// Writes the images of namespace `id`, read through `pid` (a host pid inside it); throws
    /// NamespaceError to refuse what cannot be restored.
    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws
    /// Rebuilds namespace `id` from its images; `root` is the restored tree's root, inside the
    /// new namespace, stopped and traced, once every task is rebuilt and before any resumes
    /// (work that must happen inside, such as mounting proc for its pid namespace, is injected).
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws
    /// Restore, before any task exists: refuses namespace `id` if its images are missing or
    /// cannot be rebuilt here (external ones, no such images, a machine without the feature).
    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws
    /// Dump, once the tree is frozen and before any task is read: what must be held until the
    /// dump ends (the network lock), or nil.
    static func hold(id: UInt32, pid: Int32, request: DumpRequest) throws -> (any NamespaceHold)?
    /// Restore, before the root exists: a kind whose namespace cryo's restoring thread makes and
    /// enters itself (so the objects it makes for the tree, sockets, are inside) builds it here
    /// and returns the hold; the root is then born in it, not cloned into a new one.
    static func enter(id: UInt32, images: ImageDirectory, request: RestoreRequest) throws -> (any NamespaceHold)?
    /// Restore, right after the root exists and before any task is rebuilt: what must be in
    /// place before files are opened (a mount tree of the tree's own); returns the path through
    /// which cryo reaches the tree's files (its root), or nil.
    static func build(id: UInt32, root: RestoreTarget, images: ImageDirectory, request: RestoreRequest) throws -> String?
}

extension NamespaceContents {
    static func hold(id: UInt32, pid: Int32, request: DumpRequest) throws -> (any NamespaceHold)? { nil }
    static func enter(id: UInt32, images: ImageDirectory, request: RestoreRequest) throws -> (any NamespaceHold)? { nil }
    static func build(id: UInt32, root: RestoreTarget, images: ImageDirectory, request: RestoreRequest) throws -> String? { nil }
}

/// What a kind holds while its tree is dumped or rebuilt.
protocol NamespaceHold: AnyObject {
    /// Runs `body` where the tree's objects of this kind are seen (its sockets, for net).
    func within<T>(_ body: () throws -> T) throws -> T
    /// The dump or restore is over; `treeRuns`: the tree lives on (a failed dump, one that
    /// leaves it running or stopped, a restore that succeeded), so what held it is lifted.
    func release(treeRuns: Bool) throws
}

enum NamespaceContentsKinds {
    static let all: [any NamespaceContents.Type] = [PidNamespaceContents.self, UtsNamespace.self, IpcNamespace.self, NetNamespace.self, MountNamespace.self,
                                                   UserNamespace.self, TimeNamespace.self, CgroupNamespace.self]
    static func of(_ k: NamespaceKind) -> (any NamespaceContents.Type)? { all.first { $0.kind == k } }
}

/// Every hold of one dump or restore, in the order taken.
final class NamespaceHolds {
    var holds: [(kind: NamespaceKind, hold: any NamespaceHold)] = []
    var released = false

    func within<T>(_ body: () throws -> T) throws -> T {
        func nest(_ i: Int) throws -> T { i == holds.count ? try body() : try holds[i].hold.within { try nest(i + 1) } }
        return try nest(0)
    }

    /// Newest first; every hold is released even when one fails (the first error is thrown).
    func release(treeRuns: Bool) throws {
        guard !released else { return }
        released = true
        var first: Error?
        for h in holds.reversed() {
            do { try h.hold.release(treeRuns: treeRuns) } catch { if first == nil { first = error } }
        }
        if let first { throw first }
    }

    func has(_ k: NamespaceKind) -> Bool { holds.contains { $0.kind == k } }
}
