import ArgumentParser
import Engine

/// CRIU's --external, one parser for dump, pre-dump and restore (Engine's Externals): veth
/// links of the tree's network namespace and namespaces the tree shares on purpose. Any other
/// kind would be accepted and then mean nothing, so it is refused here.
struct ExternalOptions: ParsableArguments {
    @Option(name: .customLong("external"), help: ArgumentHelp("veth[IFNAME]:OUTSIDE_NAME[@BRIDGE]: a veth of the tree's network namespace whose other end is OUTSIDE_NAME in cryo's (on BRIDGE); KIND[INODE]:KEY: a namespace the tree shares on purpose, not dumped (e.g. uts[4026532179]:hostUts).", valueName: "KEY"))
    var external: [String] = []

    func validate() throws {
        do { _ = try Externals(parsing: external) } catch { throw ValidationError("\(error)") }
    }
}
