import Foundation
import Glibc

/// A UTS namespace: hostname and domain name (CRIU's utsns-ID.img).
enum UtsNamespace: NamespaceContents {
    static let kind = NamespaceKind.uts

    static func dump(id: UInt32, pid: Int32, images: ImageDirectory, proc: ProcReader, externals: Externals) throws {
        let e = try NamespaceThread.run(in: [.uts], of: pid) { () throws -> Img_UtsnsEntry in
            var u = utsname()
            guard uname(&u) == 0 else { throw SystemCallError(call: "uname", errno: errno, context: "uts namespace of pid \(pid)") }
            var e = Img_UtsnsEntry()
            e.nodename = withUnsafeBytes(of: u.nodename) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            e.domainname = withUnsafeBytes(of: u.__domainname) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
            return e
        }
        try images.write(.utsns, id: Int(id), entry: e)
    }

    static func check(id: UInt32, images: ImageDirectory, externals: Externals) throws {
        guard images.exists(.utsns, Int(id)) else {
            throw NamespaceError.restore(kind: "uts", reason: "no \(ImageKind.utsns.fileName(Int(id))) (a namespace dumped as external cannot be restored yet)")
        }
    }

    static func restore(id: UInt32, root: RestoreTarget, images: ImageDirectory) throws {
        let e = try images.readOne(.utsns, id: Int(id), as: Img_UtsnsEntry.self)
        try NamespaceThread.run(in: [.uts], of: root.pid) {
            let n = Array(e.nodename.utf8), d = Array(e.domainname.utf8)
            guard sethostname(n, n.count) == 0 else { throw SystemCallError(call: "sethostname", errno: errno, context: e.nodename) }
            guard setdomainname(d, d.count) == 0 else { throw SystemCallError(call: "setdomainname", errno: errno, context: e.domainname) }
        }
    }
}
