import ArgumentParser
import Engine

extension NetworkLockMethod: ExpressibleByArgument {}

/// CRIU's --external and --network-lock, for a tree in its own network namespace (docs/NETNS.md).
struct NetworkOptions: ParsableArguments {
    @Option(name: .customLong("external"), help: ArgumentHelp("An external resource; veth[IFNAME]:OUTSIDE_NAME[@BRIDGE] is a veth of the tree's network namespace whose other end is OUTSIDE_NAME in cryo's (on BRIDGE).", valueName: "KEY"))
    var external: [String] = []
    @Option(name: .customLong("network-lock"), help: "How the tree's own network namespace is locked while frozen or rebuilt: nftables, iptables or skip.")
    var networkLock: NetworkLockMethod = .nftables

    /// Only veth externals are mapped; any other kind (a mount, a namespace, a unix socket)
    /// would be accepted and then mean nothing, so it is refused.
    func validate() throws {
        for e in external where !e.hasPrefix("veth[") {
            throw ValidationError("--external \(e): cryo maps only veth[IFNAME]:OUTSIDE externals yet; mounts, namespaces and other kinds are not handled")
        }
    }
}
