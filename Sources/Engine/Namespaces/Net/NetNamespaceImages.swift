import Foundation
import Glibc
import Logging

public enum NetNamespaceError: Error, CustomStringConvertible {
    case badExternal(String, String)
    /// Something in the namespace cryo cannot keep; names it.
    case unsupported(ns: UInt64, what: String)
    /// The namespace rebuilt differs from the images; names the difference.
    case mismatch(what: String)
    case lock(String)

    public var description: String {
        switch self {
        case .badExternal(let s, let r): return "--external \(s): \(r)"
        case .unsupported(let ns, let w): return "network namespace net:[\(ns)]: \(w)"
        case .mismatch(let w): return "restored network namespace: \(w)"
        case .lock(let r): return "network lock: \(r)"
        }
    }
}

/// The contents of a network namespace in CRIU's images: netdev-N.img (links), ifaddr-N.img,
/// route-N.img and route6-N.img (iproute2's save streams, as CRIU writes them) and netns-N.img
/// (sysctls). N is the namespace's id in the tree's ids images. The caller owns the namespace
/// (the tree's alone, or a new one on restore); this module fills it or reads it.
public enum NetNamespaceImages {
    static let log = Logger(label: "netns")
    static let addrMagic: UInt32 = 0x4736_1222, routeMagic: UInt32 = 0x4531_1224
    static let mainTable: UInt8 = 254, localTable: UInt8 = 255

    // MARK: dump

    /// Writes the namespace of `nsFD`, refusing (naming it) what cannot come back exactly.
    public static func dump(nsFD: Int32, id: UInt32, images: ImageDirectory, externals: VethExternals) throws {
        let ino = NetNs.inode(nsFD)
        try NetNs.within(nsFD) {
            let rt = try RtNetlink()
            func refuse(_ w: String) -> NetNamespaceError { .unsupported(ns: ino, what: w) }
            var devices: [Img_NetDeviceEntry] = []
            for l in try NetLink.all(rt) {
                var e = Img_NetDeviceEntry()
                e.ifindex = UInt32(bitPattern: l.index)
                e.mtu = l.mtu
                e.flags = l.flags
                e.name = l.name
                e.address = Data(l.address)
                if l.arphrd == NetLink.arphrdLoopback && l.kind == nil {
                    e.type = .loopback
                } else if l.kind == "veth" {
                    guard l.linkNetnsid != nil else {
                        throw refuse("link \(l.name) is a veth with both ends inside the namespace, which cryo cannot dump yet")
                    }
                    guard externals.peers[l.name] != nil else {
                        throw refuse("link \(l.name) is a veth whose other end is outside; name it with --external veth[\(l.name)]:OUTSIDE_NAME[@BRIDGE]")
                    }
                    e.type = .veth
                    if let p = l.link { e.peerIfindex = p }
                    if let n = l.linkNetnsid { e.peerNsid = UInt32(bitPattern: n) }
                } else {
                    throw refuse("link \(l.name) (\(l.kind ?? "type \(l.arphrd)")) is a kind of link cryo cannot dump (only lo and veth)")
                }
                if l.master != nil { throw refuse("link \(l.name) is enslaved to link index \(l.master!), which cryo cannot dump") }
                e.conf4 = NetSysctls.dump(NetSysctls.conf4, dir: "ipv4/conf/\(l.name)")
                e.conf6 = NetSysctls.dump(NetSysctls.conf6, dir: "ipv6/conf/\(l.name)")
                devices.append(e)
            }
            try checkRules(rt, refuse: refuse)
            let addrs = try rt.dump(type: RtNetlink.getAddr, body: [UInt8(AF_UNSPEC), 0, 0, 0, 0, 0, 0, 0], what: "RTM_GETADDR")
            let routes4 = try routes(rt, family: AF_INET, refuse: refuse)
            let routes6 = try routes(rt, family: AF_INET6, refuse: refuse)

            var ns = Img_NetnsEntry()
            ns.defConf4 = NetSysctls.dump(NetSysctls.conf4, dir: "ipv4/conf/default")
            ns.allConf4 = NetSysctls.dump(NetSysctls.conf4, dir: "ipv4/conf/all")
            ns.defConf6 = NetSysctls.dump(NetSysctls.conf6, dir: "ipv6/conf/default")
            ns.allConf6 = NetSysctls.dump(NetSysctls.conf6, dir: "ipv6/conf/all")
            ns.unixConf = NetSysctls.dump(NetSysctls.unix, dir: "unix")
            ns.ipv4Sysctl = NetSysctls.dump(NetSysctls.ipv4, dir: "ipv4")
            ns.cryoSysctls = NetSysctls.extra.compactMap { p in NetSysctls.read(p).map { var s = Img_SysctlEntry(); s.type = .ctlStr; s.sarg = p + "=" + $0; return s } }

            let n = Int(id)
            try images.write(.netdev, id: n, entries: devices)
            try images.writeBytes(images.filePath(.ifaddr, n), stream(addrMagic, addrs))
            try images.writeBytes(images.filePath(.route, n), stream(routeMagic, routes4))
            try images.writeBytes(images.filePath(.route6, n), stream(routeMagic, routes6))
            try images.write(.netns, id: n, entry: ns)
            log.info("network namespace net:[\(ino)] as id \(id): \(devices.count) link(s), \(addrs.count) address(es), \(routes4.count + routes6.count) route(s)")
        }
    }

    static func stream(_ magic: UInt32, _ msgs: [[UInt8]]) -> [UInt8] {
        var b: [UInt8] = []
        b.putU32(magic)
        for m in msgs { b += m }
        return b
    }

    /// The routes of the main table, as `ip route save` keeps them. Routes of other tables
    /// (the local one is the kernel's own, made from the addresses) are refused.
    static func routes(_ rt: RtNetlink, family: Int32, refuse: (String) -> NetNamespaceError) throws -> [[UInt8]] {
        let body: [UInt8] = [UInt8(family)] + [UInt8](repeating: 0, count: 11)
        var out: [[UInt8]] = []
        for m in try rt.dump(type: RtNetlink.getRoute, body: body, what: "RTM_GETROUTE") {
            guard m.count >= 28, m.u16(at: 4) == RtNetlink.newRoute else { continue }
            if m.u32(at: 24) & 0x200 != 0 { continue }  // RTM_F_CLONED: a cache entry
            let table = Route(message: m).table
            if table == UInt32(localTable) { continue }
            guard table == UInt32(mainTable) else { throw refuse("route \(Route(message: m)) is in table \(table), which cryo cannot dump (only main)") }
            out.append(m)
        }
        return out
    }

    /// Policy routing rules: only the ones a new namespace starts with (local, main, default).
    static func checkRules(_ rt: RtNetlink, refuse: (String) -> NetNamespaceError) throws {
        for (family, expected) in [(AF_INET, 3), (AF_INET6, 2)] {
            let body: [UInt8] = [UInt8(family)] + [UInt8](repeating: 0, count: 11)
            let n = try rt.dump(type: RtNetlink.getRule, body: body, what: "RTM_GETRULE").count
            if n != expected { throw refuse("\(n) \(family == AF_INET ? "IPv4" : "IPv6") routing rules (a new namespace has \(expected)): cryo cannot dump policy routing") }
        }
    }

    // MARK: restore

    /// Rebuilds the namespace `id` of `images` inside `nsFD`, a new namespace holding only lo.
    /// veth peers are made in `outsideFD` (cryo's own namespace), named as `externals` says.
    /// CRIU's --empty-ns net: nothing of the namespace was dumped; it is made with lo up, for
    /// the caller (a runtime) to set up the rest.
    static func restoreEmpty(nsFD: Int32) throws {
        try NetNs.within(nsFD) {
            let rt = try RtNetlink()
            guard let lo = try NetLink.all(rt).first(where: { $0.arphrd == NetLink.arphrdLoopback }) else {
                throw NetNamespaceError.mismatch(what: "the new namespace has no loopback")
            }
            try NetLink.set(rt, index: lo.index, name: lo.name, mtu: nil, address: nil, flags: 0x1, change: 0x1)
        }
    }

    public static func restore(nsFD: Int32, outsideFD: Int32, id: UInt32, images: ImageDirectory, externals: VethExternals) throws {
        let n = Int(id)
        let devices = try images.read(.netdev, id: n, as: Img_NetDeviceEntry.self)
        let ns = try images.readOne(.netns, id: n, as: Img_NetnsEntry.self)
        let addrs = try messages(images, .ifaddr, n, magic: addrMagic)
        let routes = try messages(images, .route, n, magic: routeMagic) + messages(images, .route6, n, magic: routeMagic)
        // Checked before anything is made: a missing name fails with nothing to undo.
        for d in devices where d.type == .veth && externals.peers[d.name] == nil {
            throw RestoreError.unsupported("veth \(d.name) of the network namespace without its outside end: give --external veth[\(d.name)]:OUTSIDE_NAME[@BRIDGE]")
        }
        for d in devices where d.type != .veth && d.type != .loopback {
            throw RestoreError.unsupported("link \(d.name) of type \(d.type) in the network namespace")
        }
        let outside = try NetNs.within(outsideFD) { try RtNetlink() }
        try NetNs.within(nsFD) {
            let rt = try RtNetlink()
            // "all" first: its forwarding and disable_ipv6 are written through to "default"
            // and every device, which come after it. New devices take "default".
            try NetSysctls.restore(NetSysctls.conf4, dir: "ipv4/conf/all", ns.allConf4)
            try NetSysctls.restore(NetSysctls.conf6, dir: "ipv6/conf/all", ns.allConf6)
            try NetSysctls.restore(NetSysctls.conf4, dir: "ipv4/conf/default", ns.defConf4)
            try NetSysctls.restore(NetSysctls.conf6, dir: "ipv6/conf/default", ns.defConf6)
            for d in devices {
                let addr = [UInt8](d.address)
                switch d.type {
                case .loopback:
                    guard let lo = try NetLink.all(rt).first(where: { $0.arphrd == NetLink.arphrdLoopback }), lo.index == Int32(bitPattern: d.ifindex) else {
                        throw NetNamespaceError.mismatch(what: "the new namespace has no loopback at index \(d.ifindex)")
                    }
                    // Up at once: the kernel gives lo its own addresses (and no main-table route
                    // for them), which the replayed ones then find in place.
                    try NetLink.set(rt, index: lo.index, name: d.name, mtu: d.mtu != lo.mtu ? d.mtu : nil, address: nil, flags: d.flags & NetLink.settableFlags)
                case .veth:
                    let peer = externals.peers[d.name]!
                    try NetLink.createVeth(rt, index: Int32(bitPattern: d.ifindex), name: d.name, mtu: d.mtu, address: addr, peerName: peer.outside, peerNsFD: outsideFD)
                    let links = try NetLink.all(outside)
                    guard let out = links.first(where: { $0.name == peer.outside }) else {
                        throw NetNamespaceError.mismatch(what: "veth end \(peer.outside) was made but is not in cryo's namespace")
                    }
                    var master: UInt32?
                    if let b = peer.bridge {
                        guard let br = links.first(where: { $0.name == b }) else { throw RestoreError.unsupported("veth \(d.name): bridge \(b) does not exist in cryo's network namespace") }
                        master = UInt32(bitPattern: br.index)
                    }
                    try NetLink.set(outside, index: out.index, name: peer.outside, mtu: nil, address: nil, flags: 0x1, change: 0x1, master: master)
                default: break
                }
            }
            for d in devices {
                // The flags last (up): addresses and routes need the link up, the sysctls not.
                try NetSysctls.restore(NetSysctls.conf4, dir: "ipv4/conf/\(d.name)", d.conf4)
                // The IPv6 mtu may be below the link's (never above): written after the link's.
                try NetSysctls.restore(NetSysctls.conf6, dir: "ipv6/conf/\(d.name)", d.conf6, skip: ["mtu"])
                try NetLink.set(rt, index: Int32(bitPattern: d.ifindex), name: d.name, mtu: d.mtu, address: nil, flags: d.flags & NetLink.settableFlags)
                try NetSysctls.restore(NetSysctls.conf6, dir: "ipv6/conf/\(d.name)", d.conf6, skip: Set(NetSysctls.conf6).subtracting(["mtu"]))
            }
            try NetSysctls.restore(NetSysctls.unix, dir: "unix", ns.unixConf)
            try NetSysctls.restore(NetSysctls.ipv4, dir: "ipv4", ns.ipv4Sysctl)
            for s in ns.cryoSysctls {
                let kv = s.sarg.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                guard kv.count == 2, NetSysctls.extra.contains(kv[0]) else { throw RestoreError.unsupported("sysctl \(s.sarg) from netns-\(n).img, which cryo does not know") }
                try NetSysctls.restore([kv[0]], dir: "", [{ var e = Img_SysctlEntry(); e.type = .ctlStr; e.sarg = kv[1]; return e }()])
            }
            for m in addrs { try replay(rt, address: m) }
            // As `ip route restore`: routes to local addresses, then to local networks, then via gateways.
            for prio in 0..<3 {
                for m in routes where Route(message: m).restorePass == prio { try replay(rt, route: m) }
            }
            try verify(rt, devices: devices, addrs: addrs, routes: routes)
            try NetSysctls.verify(NetSysctls.conf4, dir: "ipv4/conf/all", ns.allConf4)
            try NetSysctls.verify(NetSysctls.conf6, dir: "ipv6/conf/all", ns.allConf6)
            try NetSysctls.verify(NetSysctls.conf4, dir: "ipv4/conf/default", ns.defConf4)
            try NetSysctls.verify(NetSysctls.conf6, dir: "ipv6/conf/default", ns.defConf6)
            for d in devices {
                try NetSysctls.verify(NetSysctls.conf4, dir: "ipv4/conf/\(d.name)", d.conf4)
                try NetSysctls.verify(NetSysctls.conf6, dir: "ipv6/conf/\(d.name)", d.conf6)
            }
        }
        log.info("network namespace id \(id) rebuilt in net:[\(NetNs.inode(nsFD))]: \(devices.count) link(s), \(addrs.count) address(es), \(routes.count) route(s)")
    }

    /// The netlink messages after an iproute2 save stream's magic.
    static func messages(_ images: ImageDirectory, _ kind: ImageKind, _ id: Int, magic: UInt32) throws -> [[UInt8]] {
        let file = images.filePath(kind, id)
        let b = try images.readBytes(file)
        guard b.count >= 4, b.u32(at: 0) == magic else {
            throw ImageError.inconsistent(file: file, offset: 0, reason: "not an iproute2 save stream (magic 0x\(String(magic, radix: 16)))")
        }
        do { return try RtNetlink.split(Array(b[4...])) } catch { throw ImageError.inconsistent(file: file, offset: 4, reason: "\(error)") }
    }

    static func replay(_ rt: RtNetlink, address m: [UInt8]) throws {
        guard m.count >= 24, m.u16(at: 4) == RtNetlink.newAddr else { throw NetNamespaceError.mismatch(what: "ifaddr image holds message type \(m.u16(at: 4))") }
        var msg = m
        msg[6] = 0; msg[7] = 0
        let f = RtNetlink.fCreate
        msg[6] |= UInt8(f & 0xff); msg[7] |= UInt8(f >> 8)
        // The address was valid in the dumped namespace: no duplicate detection again, or
        // an IPv6 socket bound to it could not be restored until DAD ends.
        if msg[16] == UInt8(AF_INET6) { msg[18] |= 0x02 /* IFA_F_NODAD */ }
        let e = try rt.request(msg, what: "adding address")
        guard e == 0 || e == EEXIST else { throw NetlinkError(what: "adding address \(Address(message: m))", errno: e) }
    }

    static func replay(_ rt: RtNetlink, route m: [UInt8]) throws {
        var msg = m
        let f = RtNetlink.fCreate
        msg[6] = UInt8(f & 0xff); msg[7] = UInt8(f >> 8)
        let e = try rt.request(msg, what: "adding route")
        guard e == 0 || e == EEXIST else { throw NetlinkError(what: "adding route \(Route(message: m))", errno: e) }
    }

    /// Reads the new namespace back: each link, address and route of the images must be
    /// there, and no other address or route (but the kernel's IPv6 link-local ones). The
    /// kernel's own link-local addresses go through duplicate detection as the links come up:
    /// until it ends they are tentative (no local route, cannot be bound), so this waits for
    /// it, three seconds at most.
    static func verify(_ rt: RtNetlink, devices: [Img_NetDeviceEntry], addrs: [[UInt8]], routes: [[UInt8]]) throws {
        let wantA = Set(addrs.map { Address(message: $0).key }), wantR = Set(routes.map { Route(message: $0).key })
        var problem = ""
        for attempt in 0..<120 {
            if attempt > 0 { usleep(25_000) }
            problem = ""
            let links = try NetLink.all(rt)
            for d in devices {
                guard let l = links.first(where: { $0.index == Int32(bitPattern: d.ifindex) }) else { problem = "link \(d.name) index \(d.ifindex) missing"; break }
                if l.name != d.name || l.mtu != d.mtu || (l.flags & NetLink.settableFlags) != (d.flags & NetLink.settableFlags) || (d.type == .veth && l.address != [UInt8](d.address)) {
                    problem = "link \(d.name): name \(l.name) mtu \(l.mtu) flags 0x\(String(l.flags, radix: 16)), dumped mtu \(d.mtu) flags 0x\(String(d.flags, radix: 16))"
                    break
                }
            }
            if !problem.isEmpty { continue }
            let haveA = try rt.dump(type: RtNetlink.getAddr, body: [UInt8(AF_UNSPEC), 0, 0, 0, 0, 0, 0, 0], what: "RTM_GETADDR").map { Address(message: $0) }
            if let miss = wantA.subtracting(haveA.map(\.key)).first { problem = "address \(miss) missing"; continue }
            if let extra = haveA.first(where: { !wantA.contains($0.key) && !$0.isLinkLocal6 }) { problem = "address \(extra) present but not in the images"; continue }
            if let t = haveA.first(where: \.tentative) { problem = "address \(t) still tentative (duplicate address detection)"; continue }
            var haveR: [Route] = []
            for fam in [AF_INET, AF_INET6] {
                haveR += try rt.dump(type: RtNetlink.getRoute, body: [UInt8(fam)] + [UInt8](repeating: 0, count: 11), what: "RTM_GETROUTE")
                    .map { Route(message: $0) }.filter { $0.table == UInt32(mainTable) && !$0.cloned }
            }
            if let miss = wantR.subtracting(haveR.map(\.key)).first { problem = "route \(miss) missing"; continue }
            if let extra = haveR.first(where: { !wantR.contains($0.key) && !$0.isLinkLocal6 }) { problem = "route \(extra) present but not in the images"; continue }
            return
        }
        throw NetNamespaceError.mismatch(what: problem)
    }
}

/// An address message, by what identifies it.
struct Address: CustomStringConvertible {
    var family: UInt8, prefix: UInt8, index: UInt32, local: [UInt8], address: [UInt8], tentative: Bool
    init(message m: [UInt8]) {
        family = m.count > 16 ? m[16] : 0
        // IFA_F_TENTATIVE, in ifa_flags or in the IFA_FLAGS attribute.
        tentative = (m.count > 18 && m[18] & 0x40 != 0) || (NlAttr.parse(m, from: 24).first { $0.type == 8 }?.u32 ?? 0) & 0x40 != 0
        prefix = m.count > 17 ? m[17] : 0
        index = m.count >= 24 ? m.u32(at: 20) : 0
        let attrs = NlAttr.parse(m, from: 24)
        address = attrs.first { $0.type == 1 }?.data ?? []
        local = attrs.first { $0.type == 2 }?.data ?? address
    }
    var key: String { description }
    var isLinkLocal6: Bool { family == UInt8(AF_INET6) && local.count == 16 && local[0] == 0xfe && local[1] & 0xc0 == 0x80 }
    var description: String { "\(NetFormat.ip(Int32(family), local))/\(prefix) on link \(index)" + (address != local ? " peer \(NetFormat.ip(Int32(family), address))" : "") }
}

/// A route message, by what identifies it.
struct Route: CustomStringConvertible {
    var family: UInt8 = 0, dstLen: UInt8 = 0, tos: UInt8 = 0, table: UInt32 = 0, type: UInt8 = 0, scope: UInt8 = 0, cloned = false
    var dst: [UInt8] = [], gateway: [UInt8] = [], prefsrc: [UInt8] = [], oif: UInt32 = 0, priority: UInt32 = 0, multipath = false
    init(message m: [UInt8]) {
        guard m.count >= 28 else { return }
        family = m[16]; dstLen = m[17]; tos = m[19]; table = UInt32(m[20]); scope = m[22]; type = m[23]
        cloned = m.u32(at: 24) & 0x200 != 0
        for a in NlAttr.parse(m, from: 28) {
            switch a.type {
            case 1: dst = a.data
            case 4: oif = a.u32 ?? 0
            case 5: gateway = a.data
            case 6: priority = a.u32 ?? 0
            case 7: prefsrc = a.data
            case 9: multipath = true
            case 15: table = a.u32 ?? table
            default: break
            }
        }
    }
    var isLinkLocal6: Bool { family == UInt8(AF_INET6) && dst.count == 16 && dst[0] == 0xfe && dst[1] & 0xc0 == 0x80 }
    /// iproute2's restore order: 0 routes to local addresses, 1 to local networks, 2 via gateways.
    var restorePass: Int {
        if !gateway.isEmpty || multipath { return 2 }
        return prefsrc.isEmpty || prefsrc == dst ? 0 : 1
    }
    var key: String { description + " type \(type) scope \(scope) tos \(tos)" }
    var description: String {
        let fam = Int32(family)
        var s = dst.isEmpty ? "default" : "\(NetFormat.ip(fam, dst))/\(dstLen)"
        if !gateway.isEmpty { s += " via \(NetFormat.ip(fam, gateway))" }
        if oif != 0 { s += " dev \(oif)" }
        if !prefsrc.isEmpty { s += " src \(NetFormat.ip(fam, prefsrc))" }
        if priority != 0 { s += " metric \(priority)" }
        return s
    }
}
