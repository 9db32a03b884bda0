import CKernel
import Foundation
import Glibc

/// A datagram socket whose connected peer was closed keeps that peer until its next send,
/// which fails with ECONNREFUSED (the kernel then forgets it: ENOTCONN). sock_diag shows it
/// connected with no peer, as it shows a bound socket others connected to; getpeername tells
/// them apart: it still gives the closed peer's name.
///
/// Restore: a socketpair whose second end sends the queue, takes the closed peer's name if it
/// had one, and is closed; the first end keeps it as its closed peer. An abstract name is bound
/// in the socket's network namespace (taken by another socket: the restore fails, naming it); a
/// path is bound in a tmpfs of a private mount namespace (CKernel's ck_bind_unix_unseen), so no
/// file is made, and the name stays what getpeername shows.
enum UnixDeadPeer {
    /// The closed peer's name (empty: it had none), nil when the socket has no closed peer.
    static func name(of s: Int32, diag d: UnixDiag) -> [UInt8]? {
        guard d.type == UInt8(SOCK_DGRAM.rawValue), d.peer == 0, UInt32(d.state) == UnixSocket.established else { return nil }
        return UnixSocket.connectedName(s)
    }

    static func dump(_ s: Int32, diag d: UnixDiag, into u: inout Img_UnixSkEntry) {
        if let dead = name(of: s, diag: d) { u.deadPeerName = Data(dead) }
    }

    static func make(_ u: Img_UnixSkEntry, queue: [(Img_SkPacketEntry, [UInt8])], ctx: FileRestoreContext, what: String) throws -> Int32 {
        let (a, b) = try UnixSocket.pair(Int32(u.type), what: what)
        defer { close(b) }
        do {
            try SocketOptions.apply(u.opts, to: a, what: what)
            try UnixSocket.send(queue, from: b, ctx: ctx, what: what)
            // After the queue: its datagrams came from an unnamed sender.
            let name = [UInt8](u.deadPeerName)
            let context = "\(what): the name of its closed peer, \(UnixExternal.describe(name))"
            if name.first == 0 {
                let addr = UnixSocket.sockaddr(name)
                let rc = addr.withUnsafeBytes { bind(b, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "bind", errno: errno, context: context) }
            } else if !name.isEmpty {
                let path = Array(name.prefix { $0 != 0 })  // the kernel keeps the path's NUL
                let rc = path.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { ck_bind_unix_unseen(b, $0.baseAddress, UInt32($0.count)) } }
                guard rc == 0 else { throw SystemCallError(call: "bind (in a private tmpfs)", errno: -rc, context: context) }
            }
        } catch {
            close(a)
            throw error
        }
        return a
    }
}
