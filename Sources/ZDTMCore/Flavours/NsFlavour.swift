import CKernel
import Engine
import Foundation
import Glibc

/// ns: the workload runs under an init of its own in new pid, mount (its own /proc), network
/// (loopback up), UTS and IPC namespaces, as zdtm.py's ns flavour. The pidfile zdtm reads
/// holds the init (as zdtm sees it), the root of the tree zdtm dumps; the workload's own
/// pidfile (its pid inside) goes beside it. SIGTERM to the init is passed to the workload.
public struct NsFlavour: Flavour {
    public let name = "ns"
    public let summary = "new pid, mount, net, uts and ipc namespaces under an init"
    public init() {}

    public func start(binary: String, args: [String], dir: String, log: String) throws -> Int32 {
        guard let i = args.firstIndex(where: { $0.hasPrefix("--pidfile=") }) else {
            throw FlavourError.unknown(name: "ns (no --pidfile= among the workload's arguments)", available: [], planned: [])
        }
        let pidfile = String(args[i].dropFirst("--pidfile=".count))
        var inner = args
        inner[i] = "--pidfile=\(pidfile).ns"
        let argv = ([binary] + inner).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        let r = ck_ns_launch(binary, argv, dir, log, pidfile, pidfile + ".tmp")
        guard r > 0 else { throw SystemCallError(call: "fork", errno: -r, context: "ns flavour for \(binary)") }
        return r
    }
}
