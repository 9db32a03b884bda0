import Foundation
import Glibc

/// A network namespace, as far as cryo restores it here: loopback only, up. Links, addresses
/// and routes are the netns work's (a kind of its own behind this type); until then any other
/// link, or loopback down, is refused by name.
enum NetNamespace: NamespaceContents {
    static let kind = NamespaceKind.net

    static let iffUp: Int16 = 0x1

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader) throws {
        let (names, loUp) = try NamespaceThread.run(in: [.net], of: pid) { () throws -> ([String], Bool) in
            var names: [String] = []
            if let list = if_nameindex() {
                var i = 0
                while list[i].if_index != 0 { names.append(String(cString: list[i].if_name)); i += 1 }
                if_freenameindex(list)
            }
            return (names, try loopbackFlags(set: nil) & iffUp != 0)
        }
        let inode = try proc.namespaceInode(pid: pid, kind: "net")
        if let other = names.first(where: { $0 != "lo" }) {
            throw NamespaceError.unsupported(pid: pid, kind: "net", inode: inode, reason: "link \(other): cryo restores a network namespace with loopback only yet")
        }
        guard loUp else {
            throw NamespaceError.unsupported(pid: pid, kind: "net", inode: inode, reason: "loopback is down: cryo restores it up only")
        }
    }

    static func check(id: UInt32, images: ImageDirectory) throws {}

    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {
        try NamespaceThread.run(in: [.net], of: root.pid) { _ = try loopbackFlags(set: iffUp) }
    }

    /// Reads lo's flags, or ORs `set` into them (SIOCGIFFLAGS / SIOCSIFFLAGS).
    static func loopbackFlags(set: Int16?) throws -> Int16 {
        let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw SystemCallError(call: "socket", errno: errno, context: "loopback") }
        defer { close(s) }
        var req = [UInt8](repeating: 0, count: 40)  // struct ifreq: name[16], then the union
        for (i, c) in "lo".utf8.enumerated() { req[i] = c }
        guard ioctl(s, 0x8913 /* SIOCGIFFLAGS */, &req) == 0 else { throw SystemCallError(call: "ioctl(SIOCGIFFLAGS)", errno: errno, context: "lo") }
        var flags = Int16(req[16]) | Int16(req[17]) << 8
        if let set {
            flags |= set
            req[16] = UInt8(truncatingIfNeeded: flags); req[17] = UInt8(truncatingIfNeeded: flags >> 8)
            guard ioctl(s, 0x8914 /* SIOCSIFFLAGS */, &req) == 0 else { throw SystemCallError(call: "ioctl(SIOCSIFFLAGS)", errno: errno, context: "lo up") }
        }
        return flags
    }
}
