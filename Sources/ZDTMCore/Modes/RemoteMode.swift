import Engine
import Foundation
import Glibc

/// Images that never touch a disk, as a migration moves them: `cryo image-cache` runs in a
/// network namespace of its own, `cryo image-proxy` in a second one joined to it by a veth pair
/// (10.232.0.0/24, namespaces zdtm-rm-*), and every dump goes through the proxy with
/// --remote, every restore reads from the cache with --remote (their unix sockets are files,
/// reachable from the host namespace where the workload runs). With --pre N or --snaps the
/// pre-dumps or snapshots go first, each a snapshot id of its own with the previous as parent.
/// Both daemons are ended by pid and reaped, failed or not; the namespaces go with the case.
public struct RemoteMode: CRMode {
    public let name = "remote"
    public let summary = "dump (after --pre N pre-dumps or --snaps snapshots) through cryo image-proxy to cryo image-cache in two netns over a veth, restore --remote"
    public init() {}

    static let cacheAddress = "10.232.0.1"
    static let proxyAddress = "10.232.0.2"

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let tag = "\(getpid())-\(ctx.workload.name)-\(ctx.iteration)-\(UInt16.random(in: 0...UInt16.max))"
        let net = try NetnsPair(tag: tag, prefix: "zdtm-rm", serverAddress: Self.cacheAddress, clientAddress: Self.proxyAddress, mask: 24)
        defer { net.remove() }
        // sun_path holds 107 bytes; case folders can be longer.
        let sockets = NSTemporaryDirectory() + "zdtm-rm-\(tag)"
        try FileManager.default.createDirectory(atPath: sockets, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: sockets) }
        let cacheSock = sockets + "/cache.sock", proxySock = sockets + "/proxy.sock"
        let cache = try RemoteDaemon(ctx: ctx, label: "image-cache", printsPort: true, argv: [
            "/usr/bin/nsenter", "--net=/run/netns/" + net.server, ctx.cryo, "image-cache", "--address", Self.cacheAddress, "--port", "0",
            "--local-cache-path", cacheSock, "-v4", "-o", ctx.dir + "/image-cache-\(ctx.iteration).log",
        ], socket: cacheSock)
        defer { cache.stop() }
        let proxy = try RemoteDaemon(ctx: ctx, label: "image-proxy", printsPort: false, argv: [
            "/usr/bin/nsenter", "--net=/run/netns/" + net.client, ctx.cryo, "image-proxy", "--address", Self.cacheAddress,
            "--port", String(cache.port), "--local-proxy-path", proxySock, "-v4", "-o", ctx.dir + "/image-proxy-\(ctx.iteration).log",
        ], socket: proxySock)
        defer { proxy.stop() }

        let remote = ["--remote", "--local-proxy-path", proxySock]
        var prev: String?
        let steps = ctx.incremental == nil ? 0 : max(1, ctx.preDumps)
        for n in 0..<steps {
            let label = (ctx.incremental == "snaps" ? "snap" : "pre") + "\(n + 1)"
            let images = try ctx.imagesDir(label)
            let prevArgs = prev.map { ["--prev-images-dir", "../" + $0] } ?? []
            if ctx.incremental == "snaps" {
                try ctx.dump(images: images, extra: remote + ["--leave-running", "--track-mem"] + prevArgs, label: label)
            } else {
                try ctx.cryo(["pre-dump", "-t", String(ctx.pid), "-D", images, "-v4", "-o", "pre-dump-\(label).log"] + remote + prevArgs,
                             log: "\(name)-\(ctx.iteration)-\(label)-cli")
            }
            prev = "img-\(ctx.iteration)-\(label)"
            usleep(50_000)
        }
        let final = try ctx.imagesDir("dump")
        try ctx.dump(images: final, extra: remote + (prev.map { ["--track-mem", "--prev-images-dir", "../" + $0] } ?? []), label: "final")
        // The dump's own process list (in the cache, not in a folder) names the tasks a walk of a
        // forking tree missed; their pids must be free before the restore.
        let dumped = try ImageDirectory(store: RemoteSnapshotStore(snapshot: (final as NSString).lastPathComponent,
                                                                   source: RemoteSnapshotReader(socketPath: cacheSock)))
        ctx.addListedTasks(dumped)
        try PlainMode.waitGone(ctx.dumpedTree)
        try ctx.restore(images: final, extra: ["--remote", "--local-cache-path", cacheSock])
    }
}

/// An image cache or proxy of one case, started through nsenter; ready once its unix socket
/// exists (and, for the cache, once it printed its port).
final class RemoteDaemon {
    let pid: Int32
    let port: UInt16
    private var reaped = false

    init(ctx: CaseContext, label: String, printsPort: Bool, argv: [String], socket: String) throws {
        // Its stdout (the port); its own log is -o in argv.
        let log = ctx.dir + "/\(label)-\(ctx.iteration)-out.log"
        unlink(log)
        pid = try ctx.spawn(argv, log: "\(label)-\(ctx.iteration)-out")
        var got: UInt16? = printsPort ? nil : 0
        for _ in 0..<1000 {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            if got == nil, let line = text.split(separator: "\n").first(where: { !$0.isEmpty && $0.allSatisfy(\.isNumber) }) { got = UInt16(line) }
            if got != nil && access(socket, F_OK) == 0 { break }
            if let st = try? Subprocess.wait(pid, timeout: 0) {
                reaped = true
                throw ModeError.check("\(label) exited (\(Subprocess.describe(st))): \(text)")
            }
            usleep(10_000)
        }
        guard let got, access(socket, F_OK) == 0 else { Subprocess.kill9(pid); reaped = true; throw ModeError.check("\(label) not ready within 10 s (\(log))") }
        port = got
    }

    func stop() {
        if !reaped { Subprocess.kill9(pid); reaped = true }
    }
}
