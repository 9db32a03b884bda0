import CKernel
import Foundation
import Glibc

/// Packet sockets (AF_PACKET, SOCK_RAW and SOCK_DGRAM) in CRIU's PacketSockEntry: protocol,
/// bound interface, PACKET_VERSION, RESERVE, AUXDATA, ORIGDEV, VNET_HDR, LOSS, TIMESTAMP,
/// COPY_THRESH, memberships (PACKET_ADD_MEMBERSHIP, once per count) and fanout. packet_diag,
/// asked inside the task's network namespace, shows what getsockopt does not. An ifindex only
/// means the same interface in the same namespace: its name is kept (cryo's field) and a
/// restore where that index names another interface, or none, is refused. Refused at dump:
/// rings (mmap'ed), SOCK_PACKET, queued frames, options CRIU's entry has no place for.
enum PacketSocket: FdKind {
    static let name = "packet socket"
    static let type = Img_FdTypes.packetsk

    static let solPacket: Int32 = 263
    static let addMembership: Int32 = 1, copyThresh: Int32 = 7, auxdata: Int32 = 8, origdev: Int32 = 9, version: Int32 = 10
    static let reserve: Int32 = 12, loss: Int32 = 14, vnetHdr: Int32 = 15, timestamp: Int32 = 17, fanout: Int32 = 18
    /// Options with no place in the entry, and the value a fresh socket has.
    static let unkept: [(opt: Int32, name: String, fresh: Int32)] = [
        (19, "PACKET_TX_HAS_OFF", 0), (20, "PACKET_QDISC_BYPASS", 0), (23, "PACKET_IGNORE_OUTGOING", 0),
    ]

    static func claims(_ f: OpenFd) -> Bool {
        f.target.hasPrefix("socket:[") && SockDiag.protocolName(pid: f.pid, fd: f.fd) == "PACKET"
    }

    static func dump(_ f: OpenFd, id: UInt32, into entry: inout Img_FileEntry, ctx: FileDumpContext) throws {
        func refuse(_ r: String) -> DumpError { .fdState(pid: f.pid, fd: f.fd, target: f.target, reason: r) }
        let c = try ctx.copy(of: f)
        let ino = UInt32(truncatingIfNeeded: f.stat.st_ino)
        let ns = try NetNs.of(pid: f.pid)
        defer { close(ns) }
        var ifname = ""
        let found: PacketDiag?
        do {
            found = try NetNs.within(ns) { () throws -> PacketDiag? in
                let d = try SockDiag.packet(ino: ino)
                if let d, d.ifindex != 0 {
                    var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
                    if if_indextoname(d.ifindex, &name) != nil { ifname = String(cString: name) }
                }
                return d
            }
        } catch { throw refuse("packet_diag: \(error)") }
        guard let d = found else { throw refuse("not listed by packet_diag in its network namespace") }
        if d.type == 10 /* SOCK_PACKET */ { throw refuse("a SOCK_PACKET socket, which cryo does not dump") }
        if d.rxRing || d.txRing { throw refuse("an mmap'ed \(d.rxRing ? "rx" : "tx") ring (PACKET_\(d.rxRing ? "RX" : "TX")_RING), which cryo does not restore") }
        if d.ifindex != 0 && ifname.isEmpty { throw refuse("bound to interface index \(d.ifindex), which its namespace no longer has") }
        if d.num != 0 && d.flags & 1 == 0 { throw refuse("not running (its interface \(ifname) is down), which cryo does not restore") }
        var queued: Int32 = 0
        guard ck_ioctl(c, UInt(FIONREAD), &queued) == 0 else { throw refuse("SIOCINQ: \(String(cString: strerror(errno)))") }
        if queued > 0 { throw refuse("frames in its receive queue (\(queued) bytes in the first), which cryo cannot put back") }
        for u in unkept {
            if let v = SocketOptions.int(c, solPacket, u.opt), v != u.fresh { throw refuse("socket option \(u.name) is \(v), which cryo does not restore") }
        }
        var e = Img_PacketSockEntry()
        e.id = id
        e.type = UInt32(d.type)
        e.protocol = UInt32(d.num.bigEndian)
        e.flags = UInt32(bitPattern: f.info.flags & ~O_CLOEXEC)
        e.ifindex = d.ifindex
        if !ifname.isEmpty { e.ifname = ifname }
        e.fown = FdKinds.noOwner
        e.opts = try SocketOptions.read(c, what: "pid \(f.pid) fd \(f.fd)", refuse: refuse)
        e.version = d.version
        e.reserve = d.reserve
        e.auxData = d.flags & 2 != 0
        e.origDev = d.flags & 4 != 0
        e.vnetHdr = d.flags & 8 != 0
        e.loss = d.flags & 0x10 != 0
        e.timestamp = d.tstamp
        e.copyThresh = d.copyThresh
        for m in d.memberships {
            var l = Img_PacketMclist()
            l.index = m.ifindex
            l.type = UInt32(m.type)
            l.addr = Data(m.addr)
            // CRIU's entry has no count: the membership is listed once per time it was added.
            e.mclist += Array(repeating: l, count: Int(max(m.count, 1)))
        }
        if d.fanout != nil {
            // getsockopt carries the group's flags too (rollover...), which packet_diag leaves out.
            guard let fo = SocketOptions.int(c, solPacket, fanout) else { throw refuse("PACKET_FANOUT: \(String(cString: strerror(errno)))") }
            let kind = fo >> 16 & 0xff
            if kind == 6 || kind == 7 { throw refuse("a fanout group steered by a BPF program (PACKET_FANOUT_DATA), which cryo cannot read back") }
            e.fanout = UInt32(bitPattern: fo)
        }
        entry.psk = e
    }

    static func restore(_ entry: Img_FileEntry, ctx: FileRestoreContext) throws -> Int32 {
        if let made = ctx.objects[entry.id] {
            return try ctx.transport.send(made, to: ctx.task, what: "packet socket id \(entry.id)")
        }
        let e = entry.psk
        let what = "packet socket id \(entry.id) (protocol 0x\(String(UInt16(truncatingIfNeeded: e.protocol).bigEndian, radix: 16)))"
        if e.hasRxRing || e.hasTxRing {
            throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what, reason: "an mmap'ed ring, which cryo does not restore")
        }
        if e.ifindex != 0 {
            var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
            let now = if_indextoname(e.ifindex, &name) != nil ? String(cString: name) : nil
            guard let now, !e.hasIfname || now == e.ifname else {
                throw RestoreError.file(pid: ctx.task.pid, id: entry.id, what: what,
                                        reason: "bound to interface \(e.ifindex) (\(e.ifname)), which is \(now.map { "now \($0)" } ?? "gone") here")
            }
        }
        let s = socket(AF_PACKET, Int32(e.type) | Int32(SOCK_CLOEXEC.rawValue), Int32(e.protocol))
        guard s >= 0 else { throw SystemCallError(call: "socket(AF_PACKET, \(e.type))", errno: errno, context: what) }
        do {
            try SocketOptions.apply(e.opts, to: s, what: what)
            func put(_ opt: Int32, _ v: UInt32, _ name: String) throws {
                let want = Int32(bitPattern: v)
                guard SocketOptions.int(s, solPacket, opt) != want else { return }
                var x = want
                guard setsockopt(s, solPacket, opt, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(\(name) \(want))", errno: errno, context: what) }
            }
            try put(version, e.version, "PACKET_VERSION")
            try put(reserve, e.reserve, "PACKET_RESERVE")
            try put(auxdata, e.auxData ? 1 : 0, "PACKET_AUXDATA")
            try put(origdev, e.origDev ? 1 : 0, "PACKET_ORIGDEV")
            try put(vnetHdr, e.vnetHdr ? 1 : 0, "PACKET_VNET_HDR")
            try put(loss, e.loss ? 1 : 0, "PACKET_LOSS")
            try put(timestamp, e.timestamp, "PACKET_TIMESTAMP")
            // Write-only: no getsockopt to compare with.
            if e.copyThresh != 0 {
                var x = Int32(bitPattern: e.copyThresh)
                guard setsockopt(s, solPacket, copyThresh, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(PACKET_COPY_THRESH)", errno: errno, context: what) }
            }
            if e.ifindex != 0 {
                // struct sockaddr_ll: family, protocol (network order), ifindex, then unused here.
                var ll = [UInt8](repeating: 0, count: 20)
                ll[0] = UInt8(AF_PACKET); ll[2] = UInt8(e.protocol & 0xff); ll[3] = UInt8(e.protocol >> 8 & 0xff)
                withUnsafeBytes(of: Int32(bitPattern: e.ifindex)) { for i in 0..<4 { ll[4 + i] = $0[i] } }
                let rc = ll.withUnsafeBytes { bind(s, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "bind(ifindex \(e.ifindex) \(e.ifname))", errno: errno, context: what) }
            }
            for m in e.mclist {
                // struct packet_mreq with room for MAX_ADDR_LEN (32) bytes of address.
                guard m.addr.count <= 32 else { throw SystemCallError(call: "PACKET_ADD_MEMBERSHIP: \(m.addr.count)-byte address", errno: EINVAL, context: what) }
                var mr = [UInt8](repeating: 0, count: 40)
                withUnsafeBytes(of: Int32(bitPattern: m.index)) { for i in 0..<4 { mr[i] = $0[i] } }
                mr[4] = UInt8(m.type & 0xff); mr[5] = UInt8(m.type >> 8 & 0xff)
                mr[6] = UInt8(m.addr.count)
                for (i, b) in m.addr.enumerated() { mr[8 + i] = b }
                let rc = mr.withUnsafeBytes { setsockopt(s, solPacket, addMembership, $0.baseAddress, socklen_t($0.count)) }
                guard rc == 0 else { throw SystemCallError(call: "setsockopt(PACKET_ADD_MEMBERSHIP ifindex \(m.index) type \(m.type))", errno: errno, context: what) }
            }
            // After bind: a fanout group takes running sockets only.
            if e.hasFanout && e.fanout != 0xffff_ffff {
                var x = e.fanout
                guard setsockopt(s, solPacket, fanout, &x, 4) == 0 else { throw SystemCallError(call: "setsockopt(PACKET_FANOUT 0x\(String(e.fanout, radix: 16)))", errno: errno, context: what) }
            }
            try FileFlags.set(s, e.flags, what: what)
        } catch {
            close(s)
            throw error
        }
        return try ctx.install(s, id: entry.id, what: what)
    }
}
