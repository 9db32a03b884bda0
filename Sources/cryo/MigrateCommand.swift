import ArgumentParser
import Engine
import Foundation
import Glibc

struct MigrateCmd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Move a process tree to `cryo migrate-receive` on another host (pre-copy through an image proxy and cache).",
        discussion: "Pre-dumps while the tree runs until the dirty set stops shrinking or --max-rounds, then the final dump and a restore on the destination. Prints each round's size and time and the downtime. A failure before the restore began leaves the tree running here.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("t"), .customLong("tree")], help: "Root pid of the tree to move.") var tree: Int32
    @Option(name: .customLong("to"), help: "ADDR:PORT of cryo migrate-receive.") var to: String
    @Option(name: .customLong("max-rounds"), help: "Most pre-dump rounds.") var maxRounds = 5
    @Flag(name: .customLong("lazy-pages"), help: "Restore lazily on the destination: the tree runs at once, its memory comes in from the destination's cache behind it (post-copy).") var lazyPages = false

    func run() throws {
        try log.bootstrap()
        guard let colon = to.lastIndex(of: ":"), let port = UInt16(to[to.index(after: colon)...]) else { throw ValidationError("--to wants ADDR:PORT") }
        var addr = String(to[..<colon])
        if addr.hasPrefix("[") && addr.hasSuffix("]") { addr = String(addr.dropFirst().dropLast()) }
        var req = MigrateRequest(pid: tree, address: addr, port: port)
        req.maxRounds = maxRounds
        req.lazy = lazyPages
        do {
            _ = try Migrator(req).run { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }
        } catch {
            FileHandle.standardError.write(Data("cryo migrate: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct MigrateReceiveCmd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate-receive",
        abstract: "Receive a tree sent by `cryo migrate` and restore it here.",
        discussion: "An image cache that, asked by the sender, restores the final snapshot (cryo restore --remote -d) and exits; a lazy restore (migrate --lazy-pages) runs `cryo lazy-pages` from the cache, and the receiver exits once every page is in. Listens on 127.0.0.1 unless --address says otherwise; with --port 0 the chosen port is printed.")

    @OptionGroup var log: LogOptions
    @Option(name: .customLong("address"), help: "Address to listen on.") var address = "127.0.0.1"
    @Option(name: .customLong("port"), help: "TCP port (0: any free port, printed).") var port: UInt16
    @Option(name: .customLong("memory-limit"), help: "Most image bytes held at once (K/M/G suffixes; default half the memory).") var memoryLimit: String?
    @Flag(name: [.customShort("d"), .customLong("daemon")], help: "Run in the background once listening.") var daemon = false
    @Option(name: .customLong("pidfile"), help: "Write the receiver's pid here.") var pidfile: String?

    func run() throws {
        try log.bootstrap()
        var template = Array("/tmp/cryo-receive-XXXXXX".utf8CString)
        guard let d = mkdtemp(&template) else { throw ExitCode(1) }
        let dir = String(cString: d)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var opts = ImageCacheOptions(localPath: dir + "/cache.sock")
        if let memoryLimit {
            guard let n = Daemonize.bytes(memoryLimit) else { throw ValidationError("--memory-limit: '\(memoryLimit)' is not a size") }
            opts.memoryLimit = n
        }
        opts.address = address
        opts.port = port
        let cache: ImageCache
        do { cache = try ImageCache(opts) } catch {
            FileHandle.standardError.write(Data("cryo migrate-receive: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if port == 0 { FileHandle.standardOutput.write(Data("\(cache.port)\n".utf8)) }
        try Daemonize.run(daemon, pidfile: pidfile, logsToFile: log.logFile != nil, name: "migrate-receive")
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let verbosity = log.verbosity
        let cachePath = opts.localPath
        let logFile = log.logFile
        cache.stopAfterRestore = true
        let lazyDaemon = LazyDaemonSlot()
        @Sendable func logArgs(_ suffix: String) -> [String] {
            guard let logFile else { return [] }
            return ["-o", (logFile.hasPrefix("/") ? logFile : FileManager.default.currentDirectoryPath + "/" + logFile) + suffix]
        }
        cache.restoreHandler = { snapshot, lazy in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            let pidfile = dir + "/restore.pid"
            var args = ["restore", "-D", snapshot, "--remote", "--local-cache-path", cachePath, "-d", "--pidfile", pidfile, "-v\(verbosity)"] + logArgs(".restore")
            if lazy {
                // Its pages images are opened (memfds from the cache) before it listens, so it
                // serves on after the cache stops.
                let d = Process()
                d.executableURL = URL(fileURLWithPath: exe)
                d.arguments = ["lazy-pages", "-D", snapshot, "--remote", "--local-cache-path", cachePath, "-W", dir, "-v\(verbosity)"] + logArgs(".lazy-pages")
                let out = Pipe()
                d.standardOutput = out
                try d.run()
                lazyDaemon.set(d, out)
                let sock = LazyPolicy.socketPath(workDir: dir)
                var waited = 0
                while access(sock, F_OK) != 0 {
                    guard d.isRunning, waited < 30_000 else { throw RemoteImageError(snapshot: snapshot, reason: "cryo lazy-pages did not start (\(d.isRunning ? "no socket after 30 s" : "exited \(d.terminationStatus)"))") }
                    usleep(10_000); waited += 10
                }
                args += ["--lazy-pages", "-W", dir]
            }
            p.arguments = args
            let err = Pipe()
            p.standardError = err
            try p.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            guard p.terminationStatus == 0, let pid = Int32(((try? String(contentsOfFile: pidfile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) else {
                throw RemoteImageError(snapshot: snapshot, reason: "cryo restore exited \(p.terminationStatus): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            return pid
        }
        cache.serve()
        // After a lazy restore: once every page is in (the daemon's summary goes to stdout).
        if let (d, out) = lazyDaemon.get() {
            let summary = out.fileHandleForReading.readDataToEndOfFile()
            d.waitUntilExit()
            FileHandle.standardOutput.write(summary)
            if d.terminationStatus != 0 { throw ExitCode(1) }
        }
    }
}

/// The lazy-pages daemon a restore handler started, for the receiver to wait on.
final class LazyDaemonSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var slot: (Process, Pipe)?
    func set(_ p: Process, _ out: Pipe) { lock.lock(); slot = (p, out); lock.unlock() }
    func get() -> (Process, Pipe)? { lock.lock(); defer { lock.unlock() }; return slot }
}
