import Foundation

/// zdtm.py's --norst: dump with --leave-running and stop there, the tree runs on. For looking
/// at the images of one case (`zdtm repro --norst`).
public struct NoRestoreMode: CRMode {
    public let name = "norst"
    public let summary = "dump with --leave-running, no restore"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let images = ctx.dir + "/dump-\(ctx.iteration)"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        try ctx.dump(images: images, extra: ["--leave-running"])
    }
}
