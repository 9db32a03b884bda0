import Foundation
import Glibc

/// A network namespace: links (lo, veths with their outside end named --external), addresses,
/// routes and sysctls in CRIU's netdev/ifaddr/route/route6/netns images, through the rtnetlink
/// code of Namespaces/Net (docs/NETNS.md). Locked while the tree is frozen; on restore cryo's
/// thread makes and enters the namespace before the root exists, so the root is born in it and
/// the sockets cryo makes for the tree are inside.
enum NetNamespace: NamespaceContents {
    static let kind = NamespaceKind.net

    static func hold(id: UInt32, pid: Int32, request: DumpRequest) throws -> (any NamespaceHold)? {
        try TreeNetNamespace.prepare(root: pid, request: request)
    }

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        if externals.emptyNamespaces & Int32(CloneFlag.newnet) != 0 { return }
        let fd = try NetNs.of(pid: pid)
        defer { close(fd) }
        try NetNamespaceImages.dump(nsFD: fd, id: id, images: images, externals: externals.veth)
    }

    /// No images: dumped with --empty-ns net, which enter() needs again (or refuses).
    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {}

    static func enter(id: UInt32, images: ImageDirectory, request: RestoreRequest) throws -> (any NamespaceHold)? {
        try RestoredNetNamespace.begin(id: id, images: images, request: request, externals: try Externals(parsing: request.external).veth)
    }

    /// Made in enter(), before the root.
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {}
}
