import Foundation

/// Like pre, then `cryo dedup` on the final images before restoring: restore must not notice.
public struct DedupMode: CRMode {
    public let name = "dedup"
    public let summary = "like pre, plus cryo dedup on the chain before restore"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let final = try PreMode.preDumpsAndDump(ctx, mode: name)
        try ctx.cryo(["dedup", "-D", final, "-v4", "-o", "dedup.log"], log: "dedup-\(ctx.iteration)-cli")
        try PlainMode.waitGone(ctx.dumpedTree)
        try ctx.restore(images: final)
    }
}
