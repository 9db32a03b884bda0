import Foundation
import Glibc

/// A datagram socket whose connected peer was closed keeps that peer until its next send,
/// which fails with ECONNREFUSED (the kernel then forgets it: ENOTCONN). sock_diag shows it
/// connected with no peer, as it shows a bound socket others connected to; getpeername tells
/// them apart: it still gives the closed peer's name.
///
/// Restore: a socketpair whose second end sends the queue, takes the closed peer's name if it
/// had an abstract one, and is closed; the first end keeps it as its closed peer. A peer bound
/// to a path is refused at dump: binding that path again would make a file.
enum UnixDeadPeer {
    /// The closed peer's name (empty: it had none), nil when the socket has no closed peer.
    static func name(of s: Int32, diag d: UnixDiag) -> [UInt8]? {
        guard d.type == UInt8(SOCK_DGRAM.rawValue), d.peer == 0, UInt32(d.state) == UnixSocket.established else { return nil }
        return UnixSocket.connectedName(s)
    }

    static func dump(_ s: Int32, diag d: UnixDiag, into u: inout Img_UnixSkEntry, refuse: (String) -> DumpError) throws {
        guard let dead = name(of: s, diag: d) else { return }
        if let first = dead.first, first != 0 {
            throw refuse("its connected peer \(UnixExternal.describe(dead)) was closed, and cryo cannot give it a peer of that path without making the file")
        }
        u.deadPeerName = Data(dead)
    }

    static func make(_ u: Img_UnixSkEntry, queue: [(Img_SkPacketEntry, [UInt8])], ctx: FileRestoreContext, what: String) throws -> Int32 {
        let (a, b) = try UnixSocket.pair(Int32(u.type), what: what)
        defer { close(b) }
        do {
            try SocketOptions.apply(u.opts, to: a, what: what)
            try UnixSocket.send(queue, from: b, ctx: ctx, what: what)
            if !u.deadPeerName.isEmpty {
                // After the queue: its datagrams came from an unnamed sender.
                let addr = UnixSocket.sockaddr(u.deadPeerName)
                let rc = addr.withUnsafeBytes { bind(b, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "bind", errno: errno, context: "\(what): the name of its closed peer, \(UnixExternal.describe([UInt8](u.deadPeerName)))") }
            }
        } catch {
            close(a)
            throw error
        }
        return a
    }
}
