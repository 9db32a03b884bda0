import Foundation
import Glibc
import Logging

public struct MigrateRequest: Sendable {
    public var pid: Int32
    /// `cryo migrate-receive` on the destination.
    public var address: String
    public var port: UInt16
    /// Most pre-dump rounds before the final dump.
    public var maxRounds = 5
    /// The destination restores lazily: the tree runs before its memory is in, which the
    /// destination's lazy-pages daemon fills from the cache (post-copy of what the rounds sent).
    public var lazy = false
    public init(pid: Int32, address: String, port: UInt16) { self.pid = pid; self.address = address; self.port = port }
}

public struct MigrationReport: Sendable {
    public struct Round: Sendable { public var snapshot: String; public var bytes: UInt64; public var seconds: Double }
    public var rounds: [Round] = []
    public var final = Round(snapshot: "", bytes: 0, seconds: 0)
    /// From freezing the tree for the final dump until it runs on the destination.
    public var downtime: Double = 0
    public var restoredPid: Int32 = 0
}

/// `cryo migrate`: pre-dumps through an image proxy (run in this process) to the
/// destination's `cryo migrate-receive` until the dirty set stops shrinking or `maxRounds`,
/// then the final dump and a restore on the destination. Until the final dump has succeeded
/// the tree runs here, unharmed (a failed pre-dump or dump leaves it so); the dump then ends
/// it and the destination restores it.
public struct Migrator {
    public let request: MigrateRequest
    let log = Logger(label: "migrate")
    public init(_ request: MigrateRequest) { self.request = request }

    public func run(progress: (String) -> Void) throws -> MigrationReport {
        var template = Array("/tmp/cryo-migrate-XXXXXX".utf8CString)
        guard let d = mkdtemp(&template) else { throw SystemCallError(call: "mkdtemp", errno: errno, context: "migrate") }
        let dir = String(cString: d)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let sock = dir + "/proxy.sock"
        var opts = ImageProxyOptions(port: request.port, localPath: sock)
        opts.address = request.address
        let proxy = try ImageProxy(opts)
        let serving = Thread { proxy.serve() }
        serving.start()
        defer { proxy.stop() }

        var report = MigrationReport()
        // Ids unique per run, so a receiver (or a retry) never mixes two migrations.
        let tag = "migrate-\(request.pid)-\(UInt32.random(in: 0...UInt32.max))"
        var prev: String?
        for round in 1...max(1, request.maxRounds) {
            let id = "\(tag)-pre\(round)"
            let store = try RemoteDumpStore(socketPath: sock, snapshot: id)
            var req = PreDumpRequest(pid: request.pid, imagesDir: dir + "/" + id)
            req.imageStore = store
            req.prevImagesDir = prev.map { "../" + $0 }
            let t0 = Date()
            do { try PreDumper(req).run() } catch {
                store.fail(reason: "cryo migrate -t \(request.pid): pre-dump round \(round) failed: \(error)")
                throw error
            }
            let r = MigrationReport.Round(snapshot: id, bytes: store.bytesSent, seconds: Date().timeIntervalSince(t0))
            progress(String(format: "round %d: %llu bytes in %.3f s", round, r.bytes, r.seconds))
            let shrinking = report.rounds.last.map { r.bytes < $0.bytes } ?? true
            report.rounds.append(r)
            prev = id
            if !shrinking { break }
        }

        let id = "\(tag)-final"
        let store = try RemoteDumpStore(socketPath: sock, snapshot: id)
        var req = DumpRequest(pid: request.pid, imagesDir: dir + "/" + id)
        req.imageStore = store
        req.trackMem = true
        req.prevImagesDir = prev.map { "../" + $0 }
        let frozen = Date()
        do { try Dumper(req).run() } catch {
            store.fail(reason: "cryo migrate -t \(request.pid): final dump failed: \(error)")
            throw error
        }
        report.final = MigrationReport.Round(snapshot: id, bytes: store.bytesSent, seconds: Date().timeIntervalSince(frozen))
        progress(String(format: "final dump: %llu bytes in %.3f s", report.final.bytes, report.final.seconds))
        // On one host the restore needs the pids back. This process traced the killed tree and
        // outlives the dump: its waits release the zombies to their parents.
        for _ in 0..<2000 where kill(request.pid, 0) == 0 {
            var st: Int32 = 0
            while waitpid(-1, &st, WNOHANG | 0x4000_0000 /* __WALL */) > 0 {}
            usleep(5_000)
        }
        let conn = RemoteConnection(fd: try UnixStream.connect(path: sock), peer: "image proxy \(sock)")
        defer { close(conn.fd) }
        let answer = try conn.request(RemoteFrame(.restore, snapshot: id, name: request.lazy ? RemoteFrame.lazyRestore : ""))
        guard answer.kind == .ok, let pid = Int32(answer.text) else { throw TransportError(peer: "\(request.address):\(request.port)", "bad answer to restore: \(answer.kind) \(answer.text)") }
        report.downtime = Date().timeIntervalSince(frozen)
        report.restoredPid = pid
        progress(String(format: "restored%@ as pid %d on %@:%d; downtime %.3f s", request.lazy ? " lazily" : "", pid, request.address, Int(request.port), report.downtime))
        return report
    }
}
