import CKernel
import Foundation
import Glibc

/// Unix sockets of type stream, dgram and seqpacket: socketpairs with the data queued to each
/// end, bound (path or abstract) and listening sockets, and connections still waiting in a
/// listener's queue (recorded, as CRIU does, as connected to the listener). Queued data is
/// read with MSG_PEEK under SO_PEEK_OFF, so nothing is consumed. Fds in flight (SCM_RIGHTS)
/// come with the peek into cryo: each gets a files.img id (the one of a dumped fd of the same
/// description, else a new entry dumped from cryo's fd: regular files, pipes and unnamed unix
/// sockets) and the packet an scm entry listing them, as CRIU does. A stream is cut after
/// each stretch of bytes carrying fds, where a recv stops. A socket in flight in its own
/// queue, or a cycle of them, is refused.
///
/// Restore: a connected pair is made with socketpair in cryo and each end's queue is sent
/// from the other end; an end whose peer was closed gets a peer that sends its queue and
/// closes. A packet with fds in flight goes by sendmsg with SCM_RIGHTS of cryo's objects for
/// them: the one made for a task that holds the file too, else one made in cryo alone
/// (FileRestoreContext.inFlight), closed when the restore ends. Binding, listening and connecting to a listener are injected in the task after the
/// socket is installed, in the directory a relative name was bound in, so that names read
/// back exactly as they were.
enum UnixSocket: FdKind {
    static let name = "unix socket"
    static let type = Img_FdTypes.unixsk
    static let listen: UInt32 = 10, established: UInt32 = 1

    static func claims(_ f: OpenFd) -> Bool {
        // "UNIX" for datagram sockets, "UNIX-STREAM" for stream ones on recent kernels.
        f.target.hasPrefix("socket:[") && SockDiag.protocolName(pid: f.pid, fd: f.fd)?.hasPrefix("UNIX") == true
    }

    static func inode(_ target: String) -> UInt32? {
        guard target.hasPrefix("socket:["), target.hasSuffix("]") else { return nil }
        return UInt32(target.dropFirst(8).dropLast())
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let ino = UInt32(truncatingIfNeeded: f.stat.st_ino)
        let d: UnixDiag
        do { d = try SockDiag.unix(ino: ino) } catch { throw refuse("\(error)") }
        guard [1, 2, 5].contains(d.type) else { throw refuse("socket type \(d.type)") }
        if f.pid == getpid() && (!d.name.isEmpty || UInt32(d.state) == listen) {
            // In flight: restore makes it in cryo, where no name can be bound for the task.
            throw refuse("it is bound to a name or listening, which cryo restores only in a task, not in flight")
        }
        // A peer in another process of the tree is made with this end, as one socketpair.
        let ours = Set(ctx.fds.values.compactMap { inode($0.target) }).union(ctx.inFlightSockets).union(ctx.socketsOfTree())

        let c = try ctx.copy(of: f)
        var peer = d.peer
        var externalPeer: UnixExternal.Peer?
        if peer == 0 && d.type != 2 && UInt32(d.state) == established && d.shutdown == 0 {
            // A connection still waiting to be accepted: its peer (the embryo in the
            // listener's queue) has no inode to show, but carries the listener's name.
            let name = peerName(c)
            var listener: UInt32?
            for other in ours where other != ino {
                if let l = try? SockDiag.unix(ino: other), l.state == UInt8(listen), !l.name.isEmpty, l.name == name { listener = other; break }
            }
            guard let l = listener else {
                throw refuse("connected to \(name.map { "\"" + String(decoding: $0.filter { $0 != 0 }, as: UTF8.self) + "\"" } ?? "an unnamed socket"), which is not a listener of the dumped process")
            }
            peer = l
        } else if peer != 0 && !ours.contains(peer) {
            // A connection not yet accepted: its peer is the embryo in some listener's queue.
            var listener: UInt32?
            for other in ours where other != ino {
                if let l = try? SockDiag.unix(ino: other), l.state == UInt8(listen), l.icons.contains(peer) { listener = other; break }
            }
            if let l = listener {
                let embryo = try SockDiag.unix(ino: peer)
                guard embryo.rqueue == 0 else { throw refuse("\(embryo.rqueue) bytes sent on a connection the listener has not accepted") }
                peer = l
            } else {
                externalPeer = try UnixExternal.dumpPeer(of: d, ino: ino, peer: peer, f: f, ctx: ctx, refuse: refuse)
            }
        }
        if UInt32(d.state) == listen {
            for c in d.icons where c != 0 {
                let e = try SockDiag.unix(ino: c)
                guard e.peer == 0 || ours.contains(e.peer) else { throw refuse("a pending connection from socket inode \(e.peer), outside the dumped tree") }
            }
        }

        var u = Img_UnixSkEntry()
        u.id = id
        u.ino = ino
        u.type = UInt32(d.type)
        u.state = UInt32(d.state)
        u.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        u.uflags = 0
        u.backlog = UInt32(d.state) == listen ? d.wqueue : 0
        u.peer = peer
        u.fown = FdKinds.noOwner
        u.opts = try SocketOptions.read(c, what: "pid \(f.pid) fd \(f.fd)", refuse: refuse)
        u.name = Data(d.name)
        if d.shutdown != 0 { u.shutdown = Img_SkShutdown(rawValue: Int(d.shutdown & 3)) ?? .none }
        UnixDeadPeer.dump(c, diag: d, into: &u)
        if let first = d.name.first, first != 0 {
            // A relative name is taken as bound in the current directory (the kernel does not
            // keep the directory); if the socket file is not there, or was unlinked, the name
            // is bound again and its file removed.
            if first != UInt8(ascii: "/") { u.nameDir = try ctx.proc.cwd(pid: f.pid) }
            if let path = fsPath(u) {
                var st = stat()
                if stat("/proc/\(f.pid)/root" + (path.hasPrefix("/") ? "" : "/") + path, &st) != 0
                    || (d.vfsIno != nil && UInt32(truncatingIfNeeded: st.st_ino) != d.vfsIno) {
                    u.deleted = true
                }
            }
        }
        entry.usk = u
        // A stream or seqpacket socket never connected has no queue to peek (recvmsg
        // refuses it: EINVAL, ENOTCONN).
        let unconnected = d.type != 2 && UInt32(d.state) != listen && UInt32(d.state) != established
        if unconnected && d.rqueue > 0 { throw refuse("\(d.rqueue) bytes queued to a socket that is not connected") }
        if UInt32(d.state) != listen && !unconnected {
            let queue = try peekQueue(c, stream: d.type == 1, refuse: refuse)
            ctx.adoptInFlight(queue.flatMap(\.fds))
            try UnixExternal.checkSenders(queue.map(\.sender), type: d.type, external: externalPeer, refuse: refuse)
            if d.type != 1 && queue.contains(where: { $0.bytes.isEmpty }) {
                try ZeroLengthPackets.requeue(c, ino: ino, diag: d, queue: queue.map { ($0.bytes, $0.fds.count) }, leavesRunning: ctx.leavesRunning, refuse: refuse)
            }
            for p in queue {
                var e = Img_SkPacketEntry()
                e.idFor = id
                e.length = UInt32(p.bytes.count)
                if !p.fds.isEmpty {
                    var scm = Img_ScmEntry()
                    scm.type = scmRights
                    scm.rights = try p.fds.map { try ctx.inFlightID($0, carrier: f) }
                    e.scm = [scm]
                }
                ctx.skQueues.append((e, p.bytes))
            }
        }
    }

    /// The name of the socket's peer (getpeername), nil when it has none.
    static func peerName(_ s: Int32) -> [UInt8]? { connectedName(s).flatMap { $0.isEmpty ? nil : $0 } }

    /// getpeername: the peer's name (empty when unnamed), nil when there is no peer.
    static func connectedName(_ s: Int32) -> [UInt8]? {
        var buf = [UInt8](repeating: 0, count: 112)
        var len = socklen_t(buf.count)
        let rc = buf.withUnsafeMutableBytes { getpeername(s, $0.baseAddress!.assumingMemoryBound(to: Glibc.sockaddr.self), &len) }
        guard rc == 0, len >= 2 else { return nil }
        return Array(buf[2..<Int(len)])
    }

    /// scm_entry.type of SCM_RIGHTS.
    static let scmRights: UInt32 = 1

    /// Everything queued to the socket, without taking it: one element per packet, with the
    /// fds in flight the peek installed in cryo (the caller owns them). A stream comes in
    /// stretches: a recv stops after the bytes that carry fds, so each stretch ending in such
    /// bytes is one element, sent again with its fds by one sendmsg, and the fds arrive with
    /// the same bytes. The rest of a stream is one element.
    ///
    /// A packet also comes with its sender's name as the reader would see it (empty: unnamed).
    /// A zero-length packet is kept: SO_PASSCRED, on while peeking, puts credentials on every
    /// message and none on end-of-file, which also reads 0 bytes.
    static func peekQueue(_ s: Int32, stream: Bool, refuse: (String) -> DumpError) throws -> [(bytes: [UInt8], fds: [Int32], sender: [UInt8])] {
        let peekOff: Int32 = 42  // SO_PEEK_OFF
        var old: Int32 = -1
        var len = socklen_t(4)
        guard getsockopt(s, SOL_SOCKET, peekOff, &old, &len) == 0 else { throw refuse("getsockopt(SO_PEEK_OFF): \(String(cString: strerror(errno)))") }
        var zero: Int32 = 0
        guard setsockopt(s, SOL_SOCKET, peekOff, &zero, 4) == 0 else { throw refuse("setsockopt(SO_PEEK_OFF): \(String(cString: strerror(errno)))") }
        defer { _ = setsockopt(s, SOL_SOCKET, peekOff, &old, 4) }
        var passcred: Int32 = 0
        len = 4
        if !stream {
            guard getsockopt(s, SOL_SOCKET, SO_PASSCRED, &passcred, &len) == 0 else { throw refuse("getsockopt(SO_PASSCRED): \(String(cString: strerror(errno)))") }
            var one: Int32 = 1
            guard setsockopt(s, SOL_SOCKET, SO_PASSCRED, &one, 4) == 0 else { throw refuse("setsockopt(SO_PASSCRED): \(String(cString: strerror(errno)))") }
        }
        defer { if !stream { _ = setsockopt(s, SOL_SOCKET, SO_PASSCRED, &passcred, 4) } }
        var out: [(bytes: [UInt8], fds: [Int32], sender: [UInt8])] = []
        var done = false
        defer { if !done { for p in out { p.fds.forEach { close($0) } } } }
        var streamBytes: [UInt8] = []
        // A stream peek is given room for the whole queue: one cut inside bytes that carry
        // fds would have the next peek install them again.
        var inq: Int32 = 0
        if stream && ck_ioctl(s, UInt(FIONREAD), &inq) != 0 { throw refuse("ioctl(FIONREAD): \(String(cString: strerror(errno)))") }
        var buf = [UInt8](repeating: 0, count: max(1 << 20, Int(inq) + 1))
        var fds = [Int32](repeating: -1, count: 253)
        while true {
            var nfds: Int32 = 0, msg: Int32 = 0
            var name = [UInt8](repeating: 0, count: 112)
            var namelen = UInt32(name.count)
            let n = buf.withUnsafeMutableBytes { b in fds.withUnsafeMutableBufferPointer { f in name.withUnsafeMutableBytes { nb in
                ck_peek_from(s, b.baseAddress!, UInt(b.count), Int32(MSG_TRUNC), f.baseAddress!, &nfds, nb.baseAddress!, &namelen, &msg) } } }
            if n == -Int(EAGAIN) { break }
            if n == -Int(EMSGSIZE) { throw refuse("a message in its queue carries more fds than SCM_RIGHTS can pass (\(fds.count))") }
            if n < 0 { throw refuse("peek at the queue: \(String(cString: strerror(Int32(-n))))") }
            let got = Array(fds[0..<Int(nfds)])
            if stream {
                if n == 0 {
                    got.forEach { close($0) }
                    break
                }
                streamBytes += buf[0..<n]
                if !got.isEmpty {
                    out.append((streamBytes, got, []))
                    streamBytes = []
                }
            } else {
                if n == 0 && msg == 0 {
                    got.forEach { close($0) }
                    break  // end of file: the peer shut down and the queue is empty
                }
                out.append(([], got, namelen > 2 ? Array(name[2..<Int(min(namelen, UInt32(name.count)))]) : []))
                guard n <= buf.count else { throw refuse("a \(n)-byte packet in its queue, larger than cryo reads") }
                out[out.count - 1].bytes = Array(buf[0..<n])
            }
        }
        if !streamBytes.isEmpty { out.append((streamBytes, [], [])) }
        done = true
        return out
    }

    static func restoreStage(_ entry: Img_FileEntry, files: [UInt32: Img_FileEntry]) -> Int {
        let u = entry.usk
        if u.peer == 0 { return 0 }
        // Both ends of a connection before the ones still waiting in a listener's queue: an
        // accepted connection is remade by connecting and accepting, which must find the
        // listener's queue empty.
        if let p = self.entry(ino: u.peer, files), p.usk.peer == u.ino, p.usk.state != listen { return 1 }
        return 2
    }

    static func entry(ino: UInt32, _ files: [UInt32: Img_FileEntry]) -> Img_FileEntry? {
        files.values.first { $0.hasUsk && $0.usk.ino == ino }
    }

    static func entry(ino: UInt32, _ ctx: FileRestoreContext) -> Img_FileEntry? { entry(ino: ino, ctx.files) }

    /// For one end of a connection accepted from a listener of the task: (server end, client
    /// end, listener). The server end carries the listener's name.
    static func accepted(_ e: Img_FileEntry, _ files: [UInt32: Img_FileEntry]) -> (server: Img_FileEntry, client: Img_FileEntry, listener: Img_FileEntry)? {
        guard let p = entry(ino: e.usk.peer, files), p.usk.peer == e.usk.ino else { return nil }
        for (s, c) in [(e, p), (p, e)] where !s.usk.name.isEmpty && s.usk.state != listen {
            if let l = files.values.first(where: { $0.hasUsk && $0.usk.state == listen && $0.usk.name == s.usk.name && $0.usk.type == s.usk.type }) {
                return (s, c, l)
            }
        }
        return nil
    }

    /// Remakes an accepted connection as it was made: the client connects to the listener
    /// and the task accepts, so both ends have their names (getsockname, getpeername). The
    /// end whose fd comes later is parked until its turn.
    static func restoreAccepted(_ entry: Img_FileEntry, server: Img_FileEntry, client: Img_FileEntry, listenerFd: Int32,
                                listener: Img_UnixSkEntry, ctx: FileRestoreContext) throws -> Int32 {
        let (s, c) = (server.usk, client.usk)
        let what = "unix connection accepted from \(String(decoding: s.name.filter { $0 != 0 }, as: UTF8.self)) (ids \(server.id), \(client.id))"
        let r = ctx.task.remote
        let cs = socket(AF_UNIX, Int32(c.type) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard cs >= 0 else { throw SystemCallError(call: "socket(AF_UNIX)", errno: errno, context: what) }
        ctx.keepers.append(cs)
        try SocketOptions.apply(c.opts, to: cs, what: what)
        let gotC = try ctx.install(cs, id: client.id, what: what)
        if !c.name.isEmpty { try bindInTarget(c, gotC, ctx) }
        try connectInTarget(gotC, to: listener, ctx, what: what)
        let gotS: Int32
        do { gotS = Int32(try r.syscall(.accept4, UInt64(listenerFd), 0, 0, 0)) } catch RemoteError.syscallFailed(_, _, let e) {
            throw RestoreError.file(pid: ctx.task.pid, id: server.id, what: what, reason: "accept on fd \(listenerFd): \(String(cString: strerror(e)))")
        }
        // The server end exists only in the task: cryo takes a copy to set it up.
        let pidfd = try Sys.pidfdOpen(ctx.task.pid)
        defer { close(pidfd) }
        let ss = try Sys.pidfdGetfd(pidfd: pidfd, fd: gotS, context: what)
        ctx.objects[server.id] = ss
        try SocketOptions.apply(s.opts, to: ss, what: what)
        try send(try ctx.queue(for: server.id), from: cs, ctx: ctx, what: what)
        try send(try ctx.queue(for: client.id), from: ss, ctx: ctx, what: what)
        try applyShutdown(c, cs, what: what)
        try applyShutdown(s, ss, what: what)
        try FileFlags.set(cs, c.flags, what: what)
        try FileFlags.set(ss, s.flags, what: what)
        let (mine, other, otherID) = entry.id == client.id ? (gotC, gotS, server.id) : (gotS, gotC, client.id)
        ctx.parked[otherID] = Int32(try r.syscall(.fcntl, UInt64(other), UInt64(F_DUPFD), UInt64(ctx.transport.ends[ctx.task.vpid]! + 1)))
        try r.syscall(.close, UInt64(other))
        return mine
    }

    /// bind (and listen) injected in the task, in the directory a relative name was bound in.
    static func bindInTarget(_ u: Img_UnixSkEntry, _ got: Int32, _ ctx: FileRestoreContext) throws {
        let path = fsPath(u)
        if let path, !u.deleted {
            // The socket file the dumped process left behind.
            var st = stat()
            if lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
        }
        try inDir(u, ctx) {
            try ctx.task.remote.syscall(.bind, UInt64(got), try ctx.task.put(sockaddr([UInt8](u.name)), offset: 12288), UInt64(2 + u.name.count))
        }
        if u.state == listen { try ctx.task.remote.syscall(.listen, UInt64(got), UInt64(u.backlog)) }
    }

    static func connectInTarget(_ got: Int32, to p: Img_UnixSkEntry, _ ctx: FileRestoreContext, what: String) throws {
        try inDir(p, ctx) {
            do {
                try ctx.task.remote.syscall(.connect, UInt64(got), try ctx.task.put(sockaddr([UInt8](p.name)), offset: 12288), UInt64(2 + p.name.count))
            } catch RemoteError.syscallFailed(_, _, let e) {
                throw RestoreError.file(pid: ctx.task.pid, id: 0, what: what,
                                        reason: "connect to \(String(decoding: p.name.filter { $0 != 0 }, as: UTF8.self)): \(String(cString: strerror(e)))")
            }
        }
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        let u = entry.usk
        let what = "unix socket id \(entry.id) (inode \(u.ino))"
        func fail(_ r: String) -> RestoreError { .file(pid: ctx.task.pid, id: entry.id, what: what, reason: r) }
        let type = Int32(u.type)
        let peer = u.peer != 0 ? self.entry(ino: u.peer, ctx) : nil
        var bindName = !u.name.isEmpty
        var connectTo: Img_UnixSkEntry?
        var sendNamed: [(Img_SkPacketEntry, [UInt8])] = []
        let local: Int32
        if let parked = ctx.parked.removeValue(forKey: entry.id) { return parked }
        if let given = try UnixExternal.inherited(entry, ctx: ctx) { return given }
        if let (s, c, l) = accepted(entry, ctx.files), let lfd = ctx.placed[l.id] {
            return try restoreAccepted(entry, server: s, client: c, listenerFd: lfd, listener: l.usk, ctx: ctx)
        }
        if let made = ctx.unixPairs.removeValue(forKey: u.ino) {
            local = made
            bindName = false
        } else if let p = peer?.usk, p.peer == u.ino, p.state != listen {
            // Both ends: one socketpair, each end's queue sent from the other. A name one end
            // may have (accepted from a listener no longer open) is not given back.
            bindName = false
            let (a, b) = try pair(type, what: what)
            ctx.keepers.append(b)
            try SocketOptions.apply(u.opts, to: a, what: what)
            try SocketOptions.apply(p.opts, to: b, what: what)
            // Known before the queues are sent: one of them may carry the other end.
            ctx.unixPairs[p.ino] = b
            ctx.objects[entry.id] = a
            try send(try ctx.queue(for: entry.id), from: b, ctx: ctx, what: what)
            try send(try ctx.queue(for: peer!.id), from: a, ctx: ctx, what: what)
            local = a
            try applyShutdown(u, a, what: what)
            try applyShutdown(p, b, what: what)
        } else if u.peer == 0 && u.state == established && type != Int32(SOCK_DGRAM.rawValue) {
            // Its peer was closed (dump sent waiting connections to their listener): a
            // stand-in sends what was queued, then goes away.
            bindName = false
            let (a, b) = try pair(type, what: what)
            try SocketOptions.apply(u.opts, to: a, what: what)
            defer { close(b) }
            try send(try ctx.queue(for: entry.id), from: b, ctx: ctx, what: what)
            local = a
            try applyShutdown(u, a, what: what)
        } else if u.hasDeadPeerName {
            local = try UnixDeadPeer.make(u, queue: try ctx.queue(for: entry.id), ctx: ctx, what: what)
        } else {
            if u.peer != 0 {
                guard let p = peer?.usk else {
                    throw fail("connected to socket inode \(u.peer) outside the tree: give the socket that stands for it, --inherit-fd fd[N]:\(InheritedFds.socketKey(u.ino))")
                }
                guard !p.name.isEmpty else { throw fail("connected to inode \(u.peer), which has no name to connect to") }
                if p.uflags & UnixExternal.uflagExtern != 0 && !ctx.extUnixSk {
                    throw fail("connected to the outside socket \(UnixExternal.describe([UInt8](p.name))): restore with --ext-unix-sk to connect to it again")
                }
                connectTo = p
            }
            let queue = try ctx.queue(for: entry.id)
            let s: Int32
            if type == Int32(SOCK_DGRAM.rawValue) && !bindName && !queue.isEmpty {
                s = try UnixExternal.unnamedWithQueue(u, queue: queue, ctx: ctx, what: what)
            } else {
                s = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
                guard s >= 0 else { throw SystemCallError(call: "socket(AF_UNIX, \(type))", errno: errno, context: what) }
                do { try SocketOptions.apply(u.opts, to: s, what: what) } catch { close(s); throw error }
                sendNamed = queue
                if !sendNamed.isEmpty && !bindName { close(s); throw fail("data queued to an unnamed \(type == Int32(SOCK_DGRAM.rawValue) ? "" : "stream or seqpacket ")socket with no peer") }
            }
            local = s
        }
        if ctx.cryoOnly && (bindName || connectTo != nil) {
            throw fail("in flight and bound or connected by name, which cryo restores only in a task")
        }
        try FileFlags.set(local, u.flags, what: what)
        let got = try ctx.install(local, id: entry.id, what: what)
        if bindName {
            let path = fsPath(u)
            defer { if let path, u.deleted { unlink(path) } }
            try bindInTarget(u, got, ctx)
            if !sendNamed.isEmpty {
                // From a socket of cryo's: path names by the path cryo reaches them at.
                let t = socket(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0)
                defer { close(t) }
                let addr = path.map { sockaddr(Array($0.utf8)) } ?? sockaddr([UInt8](u.name))
                try send(sendNamed, from: t, to: addr, ctx: ctx, what: what)
            }
        }
        if let p = connectTo { try connectInTarget(got, to: p, ctx, what: what) }
        return got
    }

    static func pair(_ type: Int32, what: String) throws -> (Int32, Int32) {
        var sv: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, type | Int32(SOCK_CLOEXEC.rawValue), 0, &sv) == 0 else {
            throw SystemCallError(call: "socketpair(AF_UNIX, \(type))", errno: errno, context: what)
        }
        return (sv[0], sv[1])
    }

    /// Refills a queue from `s` (to `addr` when it is not connected), packet by packet; the
    /// fds in flight go with their packet as SCM_RIGHTS, made first if nothing has them yet.
    static func send(_ packets: [(Img_SkPacketEntry, [UInt8])], from s: Int32, to addr: [UInt8]? = nil, ctx: FileRestoreContext, what: String) throws {
        for (e, p) in packets {
            var fds: [Int32] = []
            for scm in e.scm {
                guard scm.type == scmRights else { throw RestoreError.file(pid: ctx.task.pid, id: e.idFor, what: what, reason: "control data of type \(scm.type) in its queue") }
                for id in scm.rights { fds.append(try ctx.inFlight(id, what: what)) }
            }
            var off = 0
            repeat {
                let n = p.withUnsafeBytes { pb in
                    fds.withUnsafeBufferPointer { fb in
                        let a = addr ?? []
                        return a.withUnsafeBytes { ab in
                            ck_send_with_fds(s, pb.baseAddress.map { $0 + off }, UInt(p.count - off), fb.baseAddress, Int32(fb.count),
                                             addr == nil ? nil : ab.baseAddress, UInt32(ab.count), Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                        }
                    }
                }
                guard n > 0 || (n == 0 && p.isEmpty) else {
                    throw SystemCallError(call: "sendmsg (refilling a \(p.count)-byte queue entry\(fds.isEmpty ? "" : " with \(fds.count) fds"))", errno: Int32(-n), context: what)
                }
                off += n
                fds = []  // with the first bytes only, as the kernel attaches them
            } while off < p.count
        }
    }

    static func applyShutdown(_ u: Img_UnixSkEntry, _ s: Int32, what: String) throws {
        guard u.hasShutdown else { return }
        let how: Int32 = switch u.shutdown { case .read: Int32(SHUT_RD); case .write: Int32(SHUT_WR); case .both: Int32(SHUT_RDWR); default: -1 }
        if how >= 0 && Glibc.shutdown(s, how) != 0 { throw SystemCallError(call: "shutdown(\(how))", errno: errno, context: what) }
    }

    /// The bound path as cryo can reach it, for path (not abstract) names.
    static func fsPath(_ u: Img_UnixSkEntry) -> String? {
        guard let first = u.name.first, first != 0 else { return nil }
        let n = String(decoding: u.name.prefix { $0 != 0 }, as: UTF8.self)
        return n.hasPrefix("/") || u.nameDir.isEmpty ? n : u.nameDir + "/" + n
    }

    /// struct sockaddr_un bytes: family, then the name as bound.
    static func sockaddr(_ name: Data) -> [UInt8] { sockaddr([UInt8](name)) }
    static func sockaddr(_ name: [UInt8]) -> [UInt8] { [UInt8(AF_UNIX), 0] + name }

    /// Runs `body` with the task's cwd at the directory a relative name was bound in (the
    /// task's own cwd is set after all fds).
    static func inDir(_ u: Img_UnixSkEntry, _ ctx: FileRestoreContext, _ body: () throws -> Void) throws {
        if !u.nameDir.isEmpty, let first = u.name.first, first != 0, first != UInt8(ascii: "/") {
            try ctx.task.remote.syscall(.chdir, try ctx.task.put(string: u.nameDir))
        }
        try body()
    }
}
