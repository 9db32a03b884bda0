import Foundation
import Glibc

/// Dump (the tree is killed), check it is gone, restore detached, check the same pid is back.
public struct PlainMode: CRMode {
    public let name = "plain"
    public let summary = "dump, check the tree is gone, restore"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let images = ctx.dir + "/dump-\(ctx.iteration)"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        try ctx.cryo(["dump", "-t", "\(ctx.pid)", "-D", images, "-v4", "-o", images + "/dump.log"], log: "dump-\(ctx.iteration)")
        try waitGone(ctx.pid)
        let pidfile = images + "/restore.pid"
        try ctx.cryo(["restore", "-D", images, "-d", "--pidfile", pidfile, "-v4", "-o", images + "/restore.log"], log: "restore-\(ctx.iteration)")
        let got = (try? String(contentsOfFile: pidfile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        guard got == "\(ctx.pid)" else { throw ModeError.check("restore gave pid \(got ?? "none"), expected \(ctx.pid)") }
    }

    /// The dumped tree must be gone (and reaped: zdtm is its subreaper) before restore.
    func waitGone(_ pid: Int32) throws {
        let deadline = Date().addingTimeInterval(10)
        while kill(pid, 0) == 0 {
            var st: Int32 = 0
            _ = waitpid(pid, &st, WNOHANG)
            if Date() > deadline { throw ModeError.check("pid \(pid) still exists after dump") }
            usleep(2_000)
        }
    }
}
