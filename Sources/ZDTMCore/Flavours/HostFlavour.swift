/// h: the host's namespaces; the workload is simply spawned.
public struct HostFlavour: Flavour {
    public let name = "h"
    public let summary = "host namespaces"
    public init() {}
    public func start(binary: String, args: [String], dir: String, log: String) throws -> Int32 {
        try Subprocess.spawn(binary, args, cwd: dir, output: log)
    }
}
