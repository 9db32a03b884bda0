import Foundation
import Glibc

/// Dump (the tree is killed), check it is gone, restore detached with the same pid.
public struct PlainMode: CRMode {
    public let name = "plain"
    public let summary = "dump, check the tree is gone, restore"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let images = ctx.dir + "/dump-\(ctx.iteration)"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        try ctx.dump(images: images)
        try waitGone(ctx.pid)
        try ctx.restore(images: images)
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
