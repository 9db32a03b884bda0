import ArgumentParser
import Engine
import Foundation
import Glibc

struct PageServerCmd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "page-server",
        abstract: "Receive pages of a dump over TCP (CRIU's page-server protocol), or serve them to a lazy restore.",
        discussion: "Listens on 127.0.0.1 unless --address says otherwise. Receiving, it writes pagemap-ID.img and pages-N.img into -D and exits after the first dump that completes; a broken or hostile connection is logged and dropped. With --port 0 the chosen port is printed on stdout.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "Where to write (or, with --lazy-pages, read) the images.") var imagesDir: String
    @Option(name: .customLong("address"), help: "Address to listen on.") var address = "127.0.0.1"
    @Option(name: .customLong("port"), help: "TCP port (0: any free port, printed).") var port: UInt16
    @Flag(name: [.customShort("d"), .customLong("daemon")], help: "Run in the background once listening.") var daemon = false
    @Option(name: .customLong("pidfile"), help: "Write the server's pid here.") var pidfile: String?
    @Flag(name: .customLong("lazy-pages"), help: "Serve the pages of -D to `cryo lazy-pages --page-server` (post-copy).") var lazyPages = false
    @Option(name: .customLong("prev-images-dir"), help: "The previous snapshot on this side (relative to -D): in-parent pages resolve there.") var prevImagesDir: String?

    func run() throws {
        try log.bootstrap()
        var opts = PageServerOptions(imagesDir: imagesDir)
        opts.address = address
        opts.port = port
        opts.lazy = lazyPages
        opts.prevImagesDir = prevImagesDir
        let server: PageServer
        do { server = try PageServer(opts) } catch {
            FileHandle.standardError.write(Data("cryo page-server: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if port == 0 { FileHandle.standardOutput.write(Data("\(server.port)\n".utf8)) }
        if daemon {
            let child = fork()
            if child < 0 { FileHandle.standardError.write(Data("cryo page-server: fork: \(String(cString: strerror(errno)))\n".utf8)); throw ExitCode(1) }
            if child > 0 {
                if let pidfile { try "\(child)\n".write(toFile: pidfile, atomically: true, encoding: .utf8) }
                Glibc.exit(0)
            }
            setsid()
            let null = open("/dev/null", O_RDWR)
            if null >= 0 { dup2(null, 0); dup2(null, 1); if log.logFile != nil { dup2(null, 2) }; close(null) }
        } else if let pidfile {
            try "\(getpid())\n".write(toFile: pidfile, atomically: true, encoding: .utf8)
        }
        let status = server.serve()
        if status != 0 { throw ExitCode(status) }
    }
}

/// `--page-server --address --port` of dump and pre-dump (CRIU's spelling).
struct PageServerClientOptions: ParsableArguments {
    @Flag(name: .customLong("page-server"), help: "Send pagemaps and pages to a page server; the other images go to -D.") var pageServer = false
    @Option(name: .customLong("address"), help: "The page server's address.") var address = "127.0.0.1"
    @Option(name: .customLong("port"), help: "The page server's port.") var port: UInt16?
    @Option(name: .customLong("ps-socket"), help: "fd of a socket already connected to the page server (e.g. made in another network namespace).") var psSocket: Int32?

    func validate() throws {
        if pageServer && port == nil && psSocket == nil { throw ValidationError("--page-server needs --port or --ps-socket") }
    }

    var target: PageServerTarget? {
        guard pageServer || psSocket != nil else { return nil }
        var t = PageServerTarget(address: address, port: port ?? 0)
        t.socket = psSocket
        return t
    }
}
