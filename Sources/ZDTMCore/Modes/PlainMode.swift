import Engine
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
        try PlainMode.waitGone(ctx.dumpedTree)
        try ctx.restore(images: images)
    }

    /// The root and every descendant, zombies included.
    static func treePids(_ root: Int32) -> [Int32] {
        let proc = ProcReader()
        var out: [Int32] = [root]
        var i = 0
        while i < out.count {
            out += (try? proc.allChildren(pid: out[i])) ?? []
            i += 1
        }
        return out
    }

    /// The dumped tree must be gone, and reaped (zdtm is the subreaper its orphans and zombies
    /// fall to), before restore: a zombie still holds its pid, and as a group or session id
    /// even the pid of its dead leader.
    static func waitGone(_ pids: [Int32]) throws {
        let deadline = Date().addingTimeInterval(10)
        for pid in pids {
            while kill(pid, 0) == 0 {
                var st: Int32 = 0
                _ = waitpid(pid, &st, WNOHANG)
                if Date() > deadline { throw ModeError.check("pid \(pid) still exists after dump") }
                usleep(1_000)
            }
        }
    }
}
