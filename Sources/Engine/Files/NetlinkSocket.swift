import Glibc

/// Netlink sockets in CRIU's NetlinkSkEntry: protocol, type, bound port id, multicast groups
/// (NETLINK_LIST_MEMBERSHIPS, every group, not only the 32 getsockname shows), connected peer
/// (port id and group). Refused at dump: messages queued (a reply or event the program has
/// not read), and the NETLINK_* options the entry has no place for.
enum NetlinkSocket: FdKind {
    static let name = "netlink socket"
    static let type = Img_FdTypes.netlinksk

    static let solNetlink: Int32 = 270
    static let addMembership: Int32 = 1, listMemberships: Int32 = 9
    static let unkept: [(opt: Int32, name: String)] = [
        (3, "NETLINK_PKTINFO"), (4, "NETLINK_BROADCAST_ERROR"), (5, "NETLINK_NO_ENOBUFS"),
        (8, "NETLINK_LISTEN_ALL_NSID"), (10, "NETLINK_CAP_ACK"), (11, "NETLINK_EXT_ACK"), (12, "NETLINK_GET_STRICT_CHK"),
    ]

    static func claims(_ f: OpenFd) -> Bool {
        f.target.hasPrefix("socket:[") && SockDiag.protocolName(pid: f.pid, fd: f.fd) == "NETLINK"
    }

    /// (port id, groups) of getsockname or getpeername; nil when there is none.
    static func address(_ s: Int32, peer: Bool) -> (port: UInt32, groups: UInt32)? {
        // struct sockaddr_nl: u16 family, u16 pad, u32 port id, u32 groups.
        var a = [UInt8](repeating: 0, count: 12)
        var l = socklen_t(a.count)
        let rc = a.withUnsafeMutableBytes { b in
            peer ? getpeername(s, b.baseAddress!.assumingMemoryBound(to: sockaddr.self), &l) : getsockname(s, b.baseAddress!.assumingMemoryBound(to: sockaddr.self), &l)
        }
        return rc == 0 ? (a.u32(at: 4), a.u32(at: 8)) : nil
    }

    static func sockaddrBytes(port: UInt32, groups: UInt32) -> [UInt8] {
        var b: [UInt8] = [UInt8(AF_NETLINK), 0, 0, 0]
        b.putU32(port); b.putU32(groups)
        return b
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let c = try ctx.copy(of: f)
        guard let type = SocketOptions.int(c, SOL_SOCKET, SO_TYPE), let proto = SocketOptions.int(c, SOL_SOCKET, SO_PROTOCOL) else {
            throw refuse("SO_TYPE/SO_PROTOCOL: \(String(cString: strerror(errno)))")
        }
        var p = pollfd(fd: c, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 0) >= 0 else { throw refuse("poll: \(String(cString: strerror(errno)))") }
        if p.revents & Int16(POLLERR) != 0 { throw refuse("a pending socket error (an overrun: ENOBUFS), which cryo does not restore") }
        if p.revents & Int16(POLLIN) != 0 { throw refuse("messages in its receive queue, which cryo cannot put back") }
        for u in unkept {
            if let v = SocketOptions.int(c, solNetlink, u.opt), v != 0 { throw refuse("socket option \(u.name) is \(v), which cryo does not restore") }
        }
        guard let me = address(c, peer: false) else { throw refuse("getsockname: \(String(cString: strerror(errno)))") }
        let dst = address(c, peer: true) ?? (0, 0)
        // The bitmap of every group joined, in words of 32; the length says how many it needs.
        var words = [UInt32](repeating: 0, count: 64)
        var l = socklen_t(words.count * 4)
        guard words.withUnsafeMutableBytes({ getsockopt(c, solNetlink, listMemberships, $0.baseAddress, &l) }) == 0 else {
            throw refuse("NETLINK_LIST_MEMBERSHIPS: \(String(cString: strerror(errno)))")
        }
        guard Int(l) <= words.count * 4 else { throw refuse("member of groups past \(words.count * 32), which cryo does not read") }
        var groups = Array(words.prefix(Int(l) / 4))
        while groups.last == 0 { groups.removeLast() }
        var e = Img_NetlinkSkEntry()
        e.id = id
        e.ino = UInt32(truncatingIfNeeded: f.stat.st_ino)
        e.protocol = UInt32(proto)
        e.state = dst.port != 0 || dst.groups != 0 ? 1 /* NETLINK_CONNECTED */ : 0
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.portid = me.port
        e.groups = groups
        e.dstPortid = dst.port
        e.dstGroup = dst.groups
        e.fown = FdKinds.noOwner
        e.opts = try SocketOptions.read(c, what: "pid \(f.pid) fd \(f.fd)", refuse: refuse)
        // CRIU's entry has no type (it restores SOCK_RAW); SO_TYPE would show the difference.
        e.type = UInt32(type)
        entry.nlsk = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        if let made = ctx.objects[entry.id] {
            return try ctx.transport.send(made, to: ctx.task, what: "netlink socket id \(entry.id)")
        }
        let e = entry.nlsk
        let what = "netlink socket id \(entry.id) (protocol \(e.protocol), port id \(e.portid))"
        let type = e.hasType ? Int32(e.type) : Int32(SOCK_RAW.rawValue)
        let s = socket(AF_NETLINK, type | Int32(SOCK_CLOEXEC.rawValue), Int32(e.protocol))
        guard s >= 0 else { throw SystemCallError(call: "socket(AF_NETLINK, \(e.protocol))", errno: errno, context: what) }
        do {
            try SocketOptions.apply(e.opts, to: s, what: what)
            if e.portid != 0 {
                let rc = sockaddrBytes(port: e.portid, groups: 0).withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "bind(port id \(e.portid))", errno: errno, context: what) }
            }
            for (w, bits) in e.groups.enumerated() {
                for b in 0..<32 where bits & (1 << UInt32(b)) != 0 {
                    var g = Int32(w * 32 + b + 1)
                    guard setsockopt(s, solNetlink, addMembership, &g, 4) == 0 else { throw SystemCallError(call: "setsockopt(NETLINK_ADD_MEMBERSHIP \(g))", errno: errno, context: what) }
                }
            }
            if e.state == 1 {
                let rc = sockaddrBytes(port: e.dstPortid, groups: e.dstGroup).withUnsafeBytes { connect(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "connect(port id \(e.dstPortid), group \(e.dstGroup))", errno: errno, context: what) }
            }
            try FileFlags.set(s, e.flags, what: what)
        } catch {
            close(s)
            throw error
        }
        return try ctx.install(s, id: entry.id, what: what)
    }
}
