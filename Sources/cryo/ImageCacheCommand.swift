import ArgumentParser
import Engine
import Foundation
import Glibc

struct ImageCacheCmd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image-cache",
        abstract: "Hold images sent by `cryo image-proxy` in memory for `cryo restore --remote` (restore side).",
        discussion: "Listens for proxies on 127.0.0.1 unless --address says otherwise, and for restores on the unix socket --local-cache-path. Snapshots are kept by id (the dump's -D) until the cache exits; past --memory-limit new images are refused and the dump sending them fails. With --port 0 the chosen port is printed on stdout.")

    @OptionGroup var log: LogOptions
    @Option(name: .customLong("address"), help: "Address to listen on for proxies.") var address = "127.0.0.1"
    @Option(name: .customLong("port"), help: "TCP port (0: any free port, printed).") var port: UInt16
    @Option(name: .customLong("local-cache-path"), help: "Unix socket restores read images from.") var localPath: String
    @Option(name: .customLong("memory-limit"), help: "Most image bytes held at once (K/M/G suffixes; default half the memory).") var memoryLimit: String?
    @Flag(name: [.customShort("d"), .customLong("daemon")], help: "Run in the background once listening.") var daemon = false
    @Option(name: .customLong("pidfile"), help: "Write the cache's pid here.") var pidfile: String?

    func run() throws {
        try log.bootstrap()
        var opts = ImageCacheOptions(localPath: localPath)
        if let memoryLimit {
            guard let n = Daemonize.bytes(memoryLimit) else { throw ValidationError("--memory-limit: '\(memoryLimit)' is not a size") }
            opts.memoryLimit = n
        }
        opts.address = address
        opts.port = port
        let cache: ImageCache
        do { cache = try ImageCache(opts) } catch {
            FileHandle.standardError.write(Data("cryo image-cache: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if port == 0 { FileHandle.standardOutput.write(Data("\(cache.port)\n".utf8)) }
        try Daemonize.run(daemon, pidfile: pidfile, logsToFile: log.logFile != nil, name: "image-cache")
        cache.serve()
    }
}
