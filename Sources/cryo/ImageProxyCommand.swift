import ArgumentParser
import Engine
import Foundation
import Glibc

struct ImageProxyCmd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image-proxy",
        abstract: "Forward the images `cryo dump --remote` writes to a `cryo image-cache` (dump side).",
        discussion: "Dumps connect to the unix socket --local-proxy-path; each gets its own TCP connection to the cache at --address:--port, and every frame is checked and forwarded as it arrives.")

    @OptionGroup var log: LogOptions
    @Option(name: .customLong("address"), help: "The image cache's address.") var address = "127.0.0.1"
    @Option(name: .customLong("port"), help: "The image cache's port.") var port: UInt16
    @Option(name: .customLong("local-proxy-path"), help: "Unix socket dumps write images to.") var localPath: String
    @Flag(name: [.customShort("d"), .customLong("daemon")], help: "Run in the background once listening.") var daemon = false
    @Option(name: .customLong("pidfile"), help: "Write the proxy's pid here.") var pidfile: String?

    func run() throws {
        try log.bootstrap()
        var opts = ImageProxyOptions(port: port, localPath: localPath)
        opts.address = address
        let proxy: ImageProxy
        do { proxy = try ImageProxy(opts) } catch {
            FileHandle.standardError.write(Data("cryo image-proxy: \(error)\n".utf8))
            throw ExitCode(1)
        }
        try Daemonize.run(daemon, pidfile: pidfile, logsToFile: log.logFile != nil, name: "image-proxy")
        proxy.serve()
    }
}
