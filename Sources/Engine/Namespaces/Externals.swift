/// CRIU's `--external` values, parsed in one place for dump, pre-dump, restore and the RPC
/// (which passes runtimes' `external` and `ext_mnt` as the same words):
/// - `veth[IFNAME]:OUTSIDE[@BRIDGE]`: a veth of the tree's network namespace (docs/NETNS.md);
/// - `KIND[INODE]:KEY`: a namespace the tree shares on purpose, not dumped (docs/NAMESPACES.md).
/// Anything else (mounts, devices, unix sockets, files) is refused by name: accepted, it would
/// mean nothing.
public struct Externals: Sendable, Equatable {
    public var veth = VethExternals()
    public var namespaces = ExternalNamespaces()

    public init() {}

    public init(parsing specs: [String]) throws {
        for s in specs {
            if s.hasPrefix("veth[") {
                veth.peers.merge(try VethExternals(parsing: [s]).peers) { _, new in new }
            } else if ExternalNamespaces.claims(s) {
                let one = try ExternalNamespaces(parsing: [s])
                for (k, v) in one.keys { namespaces.keys[k, default: [:]].merge(v) { _, new in new } }
            } else {
                throw NamespaceError.unknownExternal(s)
            }
        }
    }
}
