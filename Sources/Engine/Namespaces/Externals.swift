/// CRIU's `--external` values, parsed in one place for dump, pre-dump, restore and the RPC
/// (which passes runtimes' `external` and `ext_mnt` as the same words):
/// - `veth[IFNAME]:OUTSIDE[@BRIDGE]`: a veth of the tree's network namespace (docs/NETNS.md);
/// - `KIND[INODE]:KEY`: a namespace the tree shares on purpose, not dumped (docs/NAMESPACES.md);
/// - `unix[INO]`: the tree's unix socket INO is external, as `--ext-unix-sk=INO` (docs/EXT-UNIX.md);
/// - `mnt[A]:B`: a mount from outside the tree, as CRIU has it: at dump A is the mountpoint
///   and B the key written into the images, at restore A is the key and B the path bound there.
/// Anything else (devices, unix sockets, files) is refused by name: accepted, it would mean
/// nothing.
public struct Externals: Sendable, Equatable {
    public var veth = VethExternals()
    public var namespaces = ExternalNamespaces()
    /// `mnt[A]:B` as given: A -> B (mountpoint -> key at dump, key -> path at restore).
    public var mounts: [String: String] = [:]
    /// `unix[INO]`: sockets of the tree whose stand-in the restore takes from --inherit-fd.
    public var unixSockets: Set<UInt32> = []
    /// CRIU's --empty-ns (CLONE_NEWNET): kinds whose contents the caller sets up; not dumped.
    public var emptyNamespaces: Int32 = 0

    public init() {}

    public init(parsing specs: [String]) throws {
        for s in specs {
            if s.hasPrefix("veth[") {
                veth.peers.merge(try VethExternals(parsing: [s]).peers) { _, new in new }
            } else if ExternalNamespaces.claims(s) {
                let one = try ExternalNamespaces(parsing: [s])
                for (k, v) in one.keys { namespaces.keys[k, default: [:]].merge(v) { _, new in new } }
            } else if s.hasPrefix("unix["), s.hasSuffix("]"), let ino = UInt32(s.dropFirst(5).dropLast()), ino > 0 {
                unixSockets.insert(ino)
            } else if s.hasPrefix("mnt["), let close = s.firstIndex(of: "]"),
                      s.index(after: close) < s.endIndex, s[s.index(after: close)] == ":" {
                let a = String(s[s.index(s.startIndex, offsetBy: 4)..<close]), b = String(s[s.index(close, offsetBy: 2)...])
                guard !a.isEmpty, !b.isEmpty else { throw NamespaceError.unknownExternal(s) }
                mounts[a] = b
            } else {
                throw NamespaceError.unknownExternal(s)
            }
        }
    }
}
