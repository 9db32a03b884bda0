import ArgumentParser
import Engine

extension NetworkLockMethod: ExpressibleByArgument {}

/// CRIU's --external and --network-lock, for a tree in its own network namespace (docs/NETNS.md).
struct NetworkOptions: ParsableArguments {
    @OptionGroup var externals: ExternalOptions
    @Option(name: .customLong("network-lock"), help: "How the tree's own network namespace is locked while frozen or rebuilt: nftables, iptables or skip.")
    var networkLock: NetworkLockMethod = .nftables

    var external: [String] { externals.external }
}
