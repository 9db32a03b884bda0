import Glibc

/// CRIU's `--external veth[IFNAME]:OUTSIDE[@BRIDGE]`: the veth IFNAME inside the namespace has
/// its other end outside, named OUTSIDE (in the namespace cryo runs in), on BRIDGE if given.
/// Other external keys (mnt[], net[]...) belong to other rooms and are ignored here.
public struct VethExternals: Sendable, Equatable {
    public struct Peer: Sendable, Equatable { public var outside: String; public var bridge: String? }
    public var peers: [String: Peer] = [:]

    public init() {}

    public init(parsing specs: [String]) throws {
        for s in specs where s.hasPrefix("veth[") {
            guard let close = s.firstIndex(of: "]"), s[s.index(after: close)...].hasPrefix(":") else {
                throw NetNamespaceError.badExternal(s, "expected veth[IFNAME]:OUTSIDE_NAME[@BRIDGE]")
            }
            let inner = String(s[s.index(s.startIndex, offsetBy: 5)..<close])
            let rest = s[s.index(close, offsetBy: 2)...]
            let parts = rest.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
            guard !inner.isEmpty, inner.utf8.count < 16, !parts[0].isEmpty, parts[0].utf8.count < 16 else {
                throw NetNamespaceError.badExternal(s, "interface names are 1 to 15 bytes")
            }
            peers[inner] = Peer(outside: parts[0], bridge: parts.count > 1 && !parts[1].isEmpty ? parts[1] : nil)
        }
    }
}

/// One link as RTM_GETLINK shows it.
struct NetLink {
    var index: Int32
    var name = ""
    var flags: UInt32
    var mtu: UInt32 = 0
    var address: [UInt8] = []
    var arphrd: UInt16
    var kind: String?
    /// IFLA_LINK: a veth's peer index, in the peer's namespace.
    var link: UInt32?
    /// IFLA_LINK_NETNSID: the peer's namespace as this one numbers it (absent: the same one).
    var linkNetnsid: Int32?
    var master: UInt32?

    // linux/if_link.h
    static let ifAddress: UInt16 = 1, ifName: UInt16 = 3, ifMtu: UInt16 = 4, ifLink: UInt16 = 5, ifMaster: UInt16 = 10
    static let ifLinkinfo: UInt16 = 18, ifNetNsFd: UInt16 = 28, ifLinkNetnsid: UInt16 = 37
    static let infoKind: UInt16 = 1, infoData: UInt16 = 2, vethPeer: UInt16 = 1
    static let arphrdLoopback: UInt16 = 772
    /// The flags a user sets (IFF_UP, NOARP, PROMISC, ALLMULTI, MULTICAST, DYNAMIC); the
    /// others are the kernel's (RUNNING, LOWER_UP...).
    static let settableFlags: UInt32 = 0x1 | 0x80 | 0x100 | 0x200 | 0x1000 | 0x8000

    init?(message m: [UInt8]) {
        guard m.count >= 32, m.u16(at: 4) == RtNetlink.newLink else { return nil }
        arphrd = m.u16(at: 18)
        index = Int32(bitPattern: m.u32(at: 20))
        flags = m.u32(at: 24)
        let attrs = NlAttr.parse(m, from: 32)
        for a in attrs {
            switch a.type {
            case Self.ifName: name = a.string
            case Self.ifMtu: mtu = a.u32 ?? 0
            case Self.ifAddress: address = a.data
            case Self.ifLink: link = a.u32
            case Self.ifMaster: master = a.u32
            case Self.ifLinkNetnsid: linkNetnsid = a.u32.map { Int32(bitPattern: $0) }
            case Self.ifLinkinfo:
                kind = NlAttr.parse(a.data, from: 0).first { $0.type == Self.infoKind }?.string
            default: break
            }
        }
    }

    static func all(_ rt: RtNetlink) throws -> [NetLink] {
        try rt.dump(type: RtNetlink.getLink, body: [UInt8](repeating: 0, count: 16), what: "RTM_GETLINK").compactMap { NetLink(message: $0) }
    }

    static func ifinfo(index: Int32, flags: UInt32 = 0, change: UInt32 = 0) -> [UInt8] {
        var b: [UInt8] = [UInt8(AF_UNSPEC), 0, 0, 0]
        b.putU32(UInt32(bitPattern: index)); b.putU32(flags); b.putU32(change)
        return b
    }

    /// Sets mtu, address (when given) and the settable flags of the link `index`.
    static func set(_ rt: RtNetlink, index: Int32, name: String, mtu: UInt32?, address: [UInt8]?, flags: UInt32?, change: UInt32 = settableFlags, master: UInt32? = nil) throws {
        var body = ifinfo(index: index, flags: flags ?? 0, change: flags == nil ? 0 : change)
        if let mtu { NlAttr.put(&body, ifMtu, u32: mtu) }
        if let address, !address.isEmpty { NlAttr.put(&body, ifAddress, address) }
        if let master { NlAttr.put(&body, ifMaster, u32: master) }
        try rt.must(RtNetlink.message(type: RtNetlink.newLink, flags: 0, seq: 0, body: body), what: "setting link \(name) (index \(index))")
    }

    /// Creates the veth `name` (index `index`, in the namespace of `rt`) with its peer
    /// `peerName` made in the namespace of `peerNsFD` (with the kernel's defaults: it is
    /// not the tree's).
    static func createVeth(_ rt: RtNetlink, index: Int32, name: String, mtu: UInt32, address: [UInt8], peerName: String, peerNsFD: Int32) throws {
        var peer = ifinfo(index: 0)
        NlAttr.put(&peer, ifName, string: peerName)
        NlAttr.put(&peer, ifNetNsFd, u32: UInt32(bitPattern: peerNsFD))
        var data: [UInt8] = []
        NlAttr.put(&data, vethPeer, peer)
        var info: [UInt8] = []
        NlAttr.put(&info, infoKind, string: "veth")
        NlAttr.put(&info, infoData | NlAttr.nested, data)
        var body = ifinfo(index: index)
        NlAttr.put(&body, ifName, string: name)
        NlAttr.put(&body, ifMtu, u32: mtu)
        if !address.isEmpty { NlAttr.put(&body, ifAddress, address) }
        NlAttr.put(&body, ifLinkinfo | NlAttr.nested, info)
        try rt.must(RtNetlink.message(type: RtNetlink.newLink, flags: RtNetlink.fCreate | RtNetlink.fExcl, seq: 0, body: body),
                    what: "creating veth \(name) (index \(index)) with its peer \(peerName) outside")
    }
}
