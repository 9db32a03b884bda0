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
        let fd = try NetNs.of(pid: pid)
        defer { close(fd) }
        try NetNamespaceImages.dump(nsFD: fd, id: id, images: images, externals: externals.veth)
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        guard images.exists(.netdev, Int(id)) else {
            throw NamespaceError.restore(kind: "net", reason: "no \(ImageKind.netdev.fileName(Int(id))) (a namespace dumped as external cannot be restored yet)")
        }
    }

    static func enter(id: UInt32, images: ImageDirectory, request: RestoreRequest) throws -> (any NamespaceHold)? {
        try RestoredNetNamespace.begin(id: id, images: images, request: request, externals: try Externals(parsing: request.external).veth)
    }

    /// Made in enter(), before the root.
    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {}
}
