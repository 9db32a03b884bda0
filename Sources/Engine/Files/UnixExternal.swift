import CKernel
import Foundation
import Glibc

/// CRIU's `--ext-unix-sk[=INO,...]` as given: alone it lets a datagram socket of the tree
/// connected to a named socket outside be dumped as external; with inodes, those sockets of the
/// tree (of any type) are external, and restore takes each one's stand-in from
/// `--inherit-fd fd[N]:socket:[INO]`.
public struct ExtUnixSk: Sendable, Equatable {
    public var datagrams = false
    public var inodes: Set<UInt32> = []

    public init() {}

    /// The value a bare `--ext-unix-sk` is rewritten to (the parser takes no optional values).
    public static let bare = "dgram"

    public init(parsing values: [String]) throws {
        for v in values {
            if v == Self.bare { datagrams = true; continue }
            for part in v.split(separator: ",", omittingEmptySubsequences: false) {
                guard let ino = UInt32(part), ino > 0 else { throw ExtUnixSkError.badInode(v) }
                inodes.insert(ino)
            }
        }
    }

    /// CRIU's `--ext-unix-sk` alone becomes `--ext-unix-sk=dgram`; `-x` likewise.
    public static func normalize(_ args: [String]) -> [String] {
        args.map { $0 == "--ext-unix-sk" || $0 == "-x" ? "--ext-unix-sk=\(bare)" : $0.hasPrefix("-x") && UInt32($0.dropFirst(2).split(separator: ",").first ?? "") != nil ? "--ext-unix-sk=" + $0.dropFirst(2) : $0 }
    }
}

public enum ExtUnixSkError: Error, CustomStringConvertible {
    case badInode(String)
    public var description: String { "--ext-unix-sk=\(self.value): expected socket inodes (INO[,INO...]) or nothing" }
    var value: String { switch self { case .badInode(let v): return v } }
}

/// A unix socket of the tree connected to one outside it (docs/EXT-UNIX.md). The outside
/// socket is never dumped or touched: a datagram peer is written as CRIU's external entry
/// (its name, uflags USK_EXTERN) and connected to again by name at restore; a socket named
/// with --ext-unix-sk=INO is replaced at restore by the caller's stand-in. Data queued to the
/// tree's socket is dumped and restored; data queued to the outside socket stays there.
enum UnixExternal {
    /// CRIU's USK_EXTERN in unix_sk_entry.uflags.
    static let uflagExtern: UInt32 = 1

    enum Peer { case datagram(name: [UInt8]), inherited }

    static func describe(_ name: [UInt8]) -> String {
        guard let first = name.first else { return "an unnamed socket" }
        let text = String(decoding: name.dropFirst(first == 0 ? 1 : 0).prefix { $0 != 0 }, as: UTF8.self)
        return first == 0 ? "@\(text)" : "\"\(text)\""
    }

    /// What the tree's socket `ino`, connected to the outside socket `peer`, is dumped as; refused
    /// (naming the option that would take it) when the options given do not cover it.
    static func dumpPeer(of d: UnixDiag, ino: UInt32, peer: UInt32, f: OpenFd, ctx: FileDumpContext,
                         refuse: (String) -> DumpError) throws -> Peer {
        if ctx.extUnixSk.inodes.contains(ino) { return .inherited }
        let outside = try? SockDiag.unix(ino: peer)
        let name = outside?.name ?? []
        let what = "connected to socket inode \(peer) (\(describe(name))) outside the dumped tree"
        let byInode = "dump with --ext-unix-sk=\(ino) and restore with --inherit-fd fd[N]:socket:[\(ino)]"
        guard d.type == 2 else { throw refuse("\(what): \(byInode)") }
        guard !name.isEmpty else { throw refuse("\(what), which has no name to connect to again: \(byInode)") }
        guard ctx.extUnixSk.datagrams else { throw refuse("\(what): dump with --ext-unix-sk (reconnected by name at restore), or \(byInode)") }
        if ctx.externalUnixPeers[peer] == nil {
            let id = ctx.extraID()
            var u = Img_UnixSkEntry()
            u.id = id
            u.ino = peer
            u.type = 2
            u.state = UnixSocket.listen
            u.flags = 0
            u.uflags = uflagExtern
            u.backlog = 0
            u.peer = 0
            u.fown = FdKinds.noOwner
            // Not read back: the outside socket is never made again (CRIU writes zeros too).
            var opts = Img_SkOptsEntry()
            opts.soSndbuf = 0; opts.soRcvbuf = 0
            opts.soSndTmoSec = 0; opts.soSndTmoUsec = 0; opts.soRcvTmoSec = 0; opts.soRcvTmoUsec = 0
            u.opts = opts
            u.name = Data(name)
            // A relative name is reached from where the tree connected to it.
            if name.first != 0 && name.first != UInt8(ascii: "/") { u.nameDir = try ctx.proc.cwd(pid: f.pid) }
            var e = Img_FileEntry()
            e.type = .unixsk
            e.id = id
            e.usk = u
            ctx.extraEntries.append(e)
            ctx.externalUnixPeers[peer] = id
        }
        return .datagram(name: name)
    }

    /// Restore sends queued datagrams again from an unnamed socket of cryo's, so a datagram
    /// whose reader would see a sender's name is refused at dump.
    static func checkSenders(_ senders: [[UInt8]], type: UInt8, external: Peer?, refuse: (String) -> DumpError) throws {
        guard type == 2, let named = senders.first(where: { !$0.isEmpty }) else { return }
        if case .datagram(let name) = external, name == named {
            throw refuse("a datagram the outside socket \(describe(named)) sent is queued to it: cryo cannot send it again from that socket's name")
        }
        throw refuse("a datagram from \(describe(named)) is queued to it: cryo sends queued datagrams again from an unnamed socket, and the reader would not see that sender")
    }

    /// The caller's stand-in for a socket dumped with --ext-unix-sk=INO, nil when none was given.
    /// The socket's dumped queue is sent from the stand-in's peer, wherever it is held.
    static func inherited(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32? {
        let u = entry.usk
        guard let given = ctx.inherited.byKey[InheritedFds.socketKey(u.ino)] else { return nil }
        let what = "unix socket id \(entry.id) (inode \(u.ino), --inherit-fd fd[\(given)])"
        var st = stat()
        guard fstat(given, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "fd \(given) is not a socket")
        }
        let d = try SockDiag.unix(ino: UInt32(truncatingIfNeeded: st.st_ino))
        guard d.type == UInt8(u.type) else {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "the given socket is of type \(d.type), the dumped one of type \(u.type)")
        }
        let fd = fcntl(given, F_DUPFD_CLOEXEC, 0)
        guard fd >= 0 else { throw SystemCallError(call: "fcntl(F_DUPFD_CLOEXEC) of --inherit-fd fd \(given)", errno: errno, context: what) }
        ctx.keepers.append(fd)
        let queue = try ctx.queue(for: entry.id)
        if !queue.isEmpty {
            guard d.peer != 0, let peer = try holderCopy(ofSocket: d.peer, what: what) else {
                throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what,
                                        reason: "\(queue.count) queued entries to give back, and no process holds the given socket's peer to send them from")
            }
            defer { close(peer) }
            try UnixSocket.send(queue, from: peer, ctx: ctx, what: what)
        }
        try FileFlags.set(fd, u.flags, what: what)
        return try ctx.install(fd, id: entry.id, what: what)
    }

    /// A copy (pidfd_getfd) of the socket with inode `ino` from a process that holds it.
    static func holderCopy(ofSocket ino: UInt32, what: String) throws -> Int32? {
        let proc = ProcReader()
        let target = "socket:[\(ino)]"
        let pids = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }
        for p in pids {
            for fd in (try? proc.fds(pid: p)) ?? [] where (try? proc.fdTarget(pid: p, fd: fd)) == target {
                let pidfd = try Sys.pidfdOpen(p)
                defer { close(pidfd) }
                return try Sys.pidfdGetfd(pidfd: pidfd, fd: fd, context: what)
            }
        }
        return nil
    }

    /// A datagram socket with no name and no peer that has a queue (the sender closed, or
    /// gone): CRIU's way. A pair whose first end forgets its peer (connect AF_UNSPEC), so the
    /// second end, still connected to it, sends the queue as the unnamed sender it was; the
    /// second end then goes away.
    static func unnamedWithQueue(_ u: Img_UnixSkEntry, queue: [(Img_SkPacketEntry, [UInt8])], ctx: FileRestoreContext, what: String) throws -> Int32 {
        let (a, b) = try UnixSocket.pair(Int32(u.type), what: what)
        defer { close(b) }
        do {
            try SocketOptions.apply(u.opts, to: a, what: what)
            var unspec = sockaddr()
            unspec.sa_family = sa_family_t(AF_UNSPEC)
            guard Glibc.connect(a, &unspec, socklen_t(MemoryLayout<sa_family_t>.size)) == 0 else {
                throw SystemCallError(call: "connect(AF_UNSPEC)", errno: errno, context: what)
            }
            try UnixSocket.send(queue, from: b, ctx: ctx, what: what)
        } catch { close(a); throw error }
        return a
    }
}

/// The kernel shows a zero-length packet to one peek only (it marks it peeked), so a later dump
/// of the same tree (after --leave-running, a snapshot, or a failed dump) would not see it.
enum ZeroLengthPackets {
    /// Takes each queued packet from the head and sends it again to the tail from the peer, in
    /// order: the queue is the same, and no packet is marked. One packet at a time is in cryo's
    /// hands, and the peer's send budget is the one the packet freed. With no peer to send from,
    /// a dump that leaves the tree running is refused.
    static func requeue(_ s: Int32, ino: UInt32, diag d: UnixDiag, queue: [(bytes: [UInt8], nfds: Int)], leavesRunning: Bool,
                        refuse: (String) -> DumpError) throws {
        let what = "unix socket inode \(ino)"
        var peer: Int32?
        if d.peer != 0, let p = try? SockDiag.unix(ino: d.peer), p.peer == ino {
            peer = try UnixExternal.holderCopy(ofSocket: d.peer, what: what)
        }
        guard let peer else {
            if leavesRunning {
                throw refuse("a zero-length packet is queued and no peer is left to queue it again: no later dump of the running tree could see it")
            }
            return
        }
        defer { close(peer) }
        var buf = [UInt8](repeating: 0, count: max(1, queue.map(\.bytes.count).max() ?? 1))
        var fds = [Int32](repeating: -1, count: 253)
        for (i, p) in queue.enumerated() {
            var nfds: Int32 = 0
            let n = buf.withUnsafeMutableBytes { b in fds.withUnsafeMutableBufferPointer { ck_recv_with_fds(s, b.baseAddress!, UInt(b.count), $0.baseAddress!, &nfds) } }
            let got = Array(fds[0..<max(0, Int(nfds))])
            defer { got.forEach { close($0) } }
            guard n == p.bytes.count, got.count == p.nfds, Array(buf[0..<n]) == p.bytes else {
                throw refuse("queue changed while cryo put its packets back (packet \(i): \(n) bytes, \(p.bytes.count) peeked)\(i > 0 ? "; \(i) packet(s) already moved to its tail" : "")")
            }
            let sent = p.bytes.withUnsafeBytes { pb in got.withUnsafeBufferPointer { fb in
                ck_send_with_fds(peer, pb.baseAddress, UInt(p.bytes.count), fb.baseAddress, Int32(fb.count), nil, 0, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) } }
            guard sent == p.bytes.count else {
                throw refuse("sending packet \(i) back from its peer: \(String(cString: strerror(Int32(-sent)))); it was taken from the queue and is lost")
            }
        }
    }
}
