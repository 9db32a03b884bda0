import CKernel
import Engine
import Foundation
import Glibc

/// uns: ns plus a user namespace, as zdtm.py's uns flavour. The user namespace is made first
/// and owns the others; root inside is `UnsFlavour.hostBase` outside, for 65536 ids. The init
/// becomes root inside once the starter (root outside) has written the maps; the case's
/// folder is handed to that uid so the workload can write its files there.
public struct UnsFlavour: Flavour {
    public let name = "uns"
    public let summary = "ns in a user namespace of its own (0 inside is \(UnsFlavour.hostBase) outside)"
    public static let hostBase: UInt32 = 100_000
    public init() {}

    public func start(binary: String, args: [String], dir: String, log: String) throws -> Int32 {
        guard let i = args.firstIndex(where: { $0.hasPrefix("--pidfile=") }) else {
            throw FlavourError.unknown(name: "uns (no --pidfile= among the workload's arguments)", available: [], planned: [])
        }
        guard chown(dir, UnsFlavour.hostBase, UnsFlavour.hostBase) == 0 else {
            throw SystemCallError(call: "chown", errno: errno, context: "\(dir) to \(UnsFlavour.hostBase), root in the workload's user namespace")
        }
        // zdtm's output folder is root's alone: the workload's uid must pass through it.
        let parent = (dir as NSString).deletingLastPathComponent
        var st = stat()
        if stat(parent, &st) == 0, st.st_mode & 0o001 == 0 { chmod(parent, (st.st_mode & 0o7777) | 0o001) }
        let pidfile = String(args[i].dropFirst("--pidfile=".count))
        var inner = args
        inner[i] = "--pidfile=\(pidfile).ns"
        let argv = ([binary] + inner).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        let r = ck_uns_launch(binary, argv, dir, log, pidfile, pidfile + ".tmp", "0 \(UnsFlavour.hostBase) 65536\n")
        guard r > 0 else { throw SystemCallError(call: "fork", errno: -r, context: "uns flavour for \(binary)") }
        return r
    }
}
