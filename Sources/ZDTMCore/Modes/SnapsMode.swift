import Engine
import Foundation
import Glibc

/// Snapshots of a running workload: N dumps with --leave-running, each incremental on the
/// previous, then a final dump and a restore from the last one.
public struct SnapsMode: CRMode {
    public let name = "snaps"
    public let summary = "N snapshot dumps with --leave-running (--pre, default 2), final dump, restore from the last"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let final = try SnapsMode.snapshotsAndDump(ctx)
        try PlainMode.waitGone(ctx.dumpedTree)
        try ctx.restore(images: final)
    }

    /// The snapshot dumps and the final dump; returns the final images folder.
    static func snapshotsAndDump(_ ctx: CaseContext) throws -> String {
        let store = try TrackStoreHolder.make()
        let prev = try SnapsMode.snapshots(ctx, store: store)
        let final = try ctx.imagesDir("dump")
        try ctx.dump(images: final, extra: ["--track-mem", "--prev-images-dir", "../" + prev] + (store?.arg ?? []), label: "final", passFd: store?.fd)
        return final
    }

    /// The snapshots before the final dump; returns the last one's folder name (img-ITER-snapN).
    static func snapshots(_ ctx: CaseContext, store: TrackStoreHolder?) throws -> String {
        var prev: String?
        for n in 1...max(1, ctx.preDumps) {
            let label = "snap\(n)"
            let images = try ctx.imagesDir(label)
            var extra = ["--leave-running", "--track-mem"] + (store?.arg ?? [])
            if let prev { extra += ["--prev-images-dir", "../" + prev] }
            try ctx.dump(images: images, extra: extra, label: label, passFd: store?.fd)
            prev = "img-\(ctx.iteration)-\(label)"
            usleep(50_000)
        }
        return prev!
    }
}
