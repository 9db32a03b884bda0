import Foundation
import Glibc

/// Post-copy from local images: dump, start `cryo lazy-pages` on the images, restore with
/// --lazy-pages (private anonymous memory comes through userfaultfd as the workload touches it
/// and in the background), and wait until the daemon has put every page in. With --pre N or
/// --snaps the final dump comes after N pre-dumps or snapshots, and the daemon serves the
/// pages through the images' parent chain.
public struct LazyMode: CRMode {
    public let name = "lazy"
    public let summary = "dump, restore --lazy-pages with cryo lazy-pages serving the pages from the images"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let images = try IncrementalSteps.dump(ctx, mode: name)
        try PlainMode.waitGone(ctx.dumpedTree)
        try LazyMode.restoreLazily(ctx, images: images, daemon: [ctx.cryo, "lazy-pages", "-D", images])
    }

    /// Starts the lazy-pages daemon (`daemon`: argv, cryo lazy-pages or a wrapper of it),
    /// restores `images` lazily, and waits for the daemon to finish. The daemon is ended by
    /// pid and reaped on every path.
    static func restoreLazily(_ ctx: CaseContext, images: String, daemon argv: [String]) throws {
        let tag = "lazy-pages-\(ctx.iteration)"
        let daemon = try ctx.spawn(argv + ["-W", images, "-v4", "-o", ctx.dir + "/" + tag + ".log"], log: tag + "-cli")
        var reaped = false
        defer { if !reaped { Subprocess.kill9(daemon) } }
        try ctx.restore(images: images, extra: ["--lazy-pages"])
        // A workload at rest faults little: the background fill brings the rest.
        guard let st = try Subprocess.wait(daemon, timeout: 120) else {
            throw ModeError.check("cryo lazy-pages (pid \(daemon)) still running 120 s after the restore (see \(ctx.dir)/\(tag).log)")
        }
        reaped = true
        if Subprocess.exitCode(st) != 0 {
            let tail = ((try? String(contentsOfFile: ctx.dir + "/\(tag)-cli.log", encoding: .utf8)) ?? "")
                .split(separator: "\n").suffix(3).joined(separator: " | ")
            throw ModeError.check("cryo lazy-pages \(Subprocess.describe(st)): \(tail)")
        }
    }
}
