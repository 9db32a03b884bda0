import ArgumentParser
import Engine
import Foundation
import Glibc

/// `cryo swrk FD`: CRIU's RPC over a socket the runtime made (runc, crun, go-criu, pycriu start
/// `criu swrk FD`; with `--criu /path/to/cryo` they start cryo).
struct Swrk: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve CRIU's RPC (rpc.proto) on an inherited SOCK_SEQPACKET socket, as `criu swrk`.",
        discussion: "Answers VERSION, CHECK, FEATURE_CHECK, DUMP, PRE_DUMP, RESTORE, PAGE_SERVER and WAIT_PID, and sends NOTIFY at each action point when notify_scripts is set. Options map onto `cryo dump`/`restore` options; one cryo cannot honour is refused by its rpc.proto name. See docs/RPC.md.")

    @Argument(help: "The socket's fd.") var fd: Int32

    func run() throws {
        // Callers may start swrk with 0, 1 and 2 closed (pycriu does): a file cryo opens must
        // not take their place and receive stderr's writes.
        for std: Int32 in 0...2 where fcntl(std, F_GETFD) < 0 {
            let null = open("/dev/null", O_RDWR)
            if null >= 0 && null != std { dup2(null, std); close(null) }
        }
        // Not for the tree: a restored task or the tracking keeper must not hold it open.
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let session: RPCSession
        do { session = try RPCSession(fd: fd, parser: CLIParser()) } catch {
            FileHandle.standardError.write(Data("cryo swrk: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let status = session.serve()
        if status != 0 { throw ExitCode(status) }
    }
}

/// `cryo service`: CRIU's RPC daemon on a unix socket; each connection is served by a child.
struct Service: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve CRIU's RPC on a unix SOCK_SEQPACKET socket, as `criu service`.",
        discussion: "Each connection is served in its own process, which exits once its requests are done. The socket is made with mode 0600: only root (or its owner) may ask for checkpoints.")

    // No -v/-o here: each connection logs where its request's log_level and log_file say.
    @Option(name: .customLong("address"), help: "The socket's path.") var address = "/var/run/cryo_service.socket"
    @Flag(name: [.customShort("d"), .customLong("daemon")], help: "Run in the background once listening.") var daemon = false
    @Option(name: .customLong("pidfile"), help: "Write the service's pid here.") var pidfile: String?

    func run() throws {
        let listener: Int32
        do { listener = try RPCService.listen(path: address) } catch {
            FileHandle.standardError.write(Data("cryo service: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if daemon {
            let child = fork()
            if child < 0 { throw ExitCode(1) }
            if child > 0 {
                if let pidfile { try "\(child)\n".write(toFile: pidfile, atomically: true, encoding: .utf8) }
                Glibc.exit(0)
            }
            setsid()
            let null = open("/dev/null", O_RDWR)
            if null >= 0 { for std: Int32 in 0...2 { dup2(null, std) }; if null > 2 { close(null) } }
        } else if let pidfile {
            try "\(getpid())\n".write(toFile: pidfile, atomically: true, encoding: .utf8)
        }
        RPCService.serve(listener: listener, path: address) { conn in
            guard let session = try? RPCSession(fd: conn, parser: CLIParser()) else { return 1 }
            return session.serve()
        }
    }
}

/// RPC requests parsed by the CLI's own commands: the same requests `cryo dump` builds.
struct CLIParser: RPCCommandParser {
    func dumpRequest(_ args: [String]) throws -> DumpRequest { try Dump.parse(args).request() }
    func preDumpRequest(_ args: [String]) throws -> PreDumpRequest { try PreDump.parse(args).request() }
    func restoreRequest(_ args: [String]) throws -> RestoreRequest { try Restore.parse(args).request() }
    func pageServerOptions(_ args: [String]) throws -> PageServerOptions {
        let c = try PageServerCmd.parse(args)
        var o = PageServerOptions(imagesDir: c.imagesDir)
        o.address = c.address
        o.port = c.port
        o.lazy = c.lazyPages
        o.prevImagesDir = c.prevImagesDir
        return o
    }
    func message(for error: Error) -> String { Cryo.message(for: error) }
}
