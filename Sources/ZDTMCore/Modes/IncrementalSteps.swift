/// The dumps a transfer mode takes before it restores, as --pre N / --snaps ask (CaseContext.incremental):
/// none (one dump), N pre-dumps and a final dump, or N snapshot dumps and a final dump. Each
/// later dump holds only what changed, so a lazy restore of the final images takes the older
/// pages through the parent chain.
enum IncrementalSteps {
    /// Runs the dumps; returns the final images folder (the workload is gone after it).
    static func dump(_ ctx: CaseContext, mode: String) throws -> String {
        switch ctx.incremental {
        case "pre": return try PreMode.preDumpsAndDump(ctx, mode: mode)
        case "snaps": return try SnapsMode.snapshotsAndDump(ctx)
        default:
            let images = try ctx.imagesDir("dump")
            try ctx.dump(images: images)
            return images
        }
    }
}
