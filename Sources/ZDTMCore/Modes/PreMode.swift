import Engine
import Foundation
import Glibc

/// The track store a multi-step mode holds for one iteration when ZDTM_TRACK_STORE=1: zdtm owns
/// the socket, as a container runtime would, and hands it to each cryo as an inherited fd.
/// Closing it ends the tracking it holds. By default zdtm runs the commands as CRIU users type
/// them, with no fd: cryo's keeper holds the tracking (docs/INCREMENTAL.md).
final class TrackStoreHolder {
    let fd: Int32
    init() throws {
        do { fd = try TrackStore.makeSocket() } catch { throw ModeError.check("cannot create the track store: \(error)") }
    }
    static func make() throws -> TrackStoreHolder? {
        ProcessInfo.processInfo.environment["ZDTM_TRACK_STORE"] == "1" ? try TrackStoreHolder() : nil
    }
    var arg: [String] { ["--track-store", String(Subprocess.passedFd)] }
    deinit { close(fd) }
}

/// CRIU's pre-dump flow: N pre-dumps while the workload runs (each after the previous one,
/// copying only what changed), a final dump of what changed since, then restore from the chain.
public struct PreMode: CRMode {
    public let name = "pre"
    public let summary = "N pre-dumps (--pre, default 2), final dump with --track-mem, restore through the chain"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let final = try PreMode.preDumpsAndDump(ctx, mode: name)
        try PlainMode.waitGone(ctx.dumpedTree)
        try ctx.restore(images: final)
    }

    /// Runs the pre-dumps and the final dump; returns the final images folder.
    static func preDumpsAndDump(_ ctx: CaseContext, mode: String) throws -> String {
        let store = try TrackStoreHolder.make()
        let prev = try preDumps(ctx, mode: mode, store: store)
        let final = try ctx.imagesDir("dump")
        try ctx.dump(images: final, extra: ["--track-mem", "--prev-images-dir", "../" + prev] + (store?.arg ?? []), label: "final", passFd: store?.fd)
        return final
    }

    /// The pre-dumps alone; returns the last one's folder name (img-ITER-preN).
    static func preDumps(_ ctx: CaseContext, mode: String, store: TrackStoreHolder?) throws -> String {
        var prev: String?
        for n in 1...max(1, ctx.preDumps) {
            let label = "pre\(n)"
            let images = try ctx.imagesDir(label)
            var args = ["pre-dump", "-t", String(ctx.pid), "-D", images, "-v4", "-o", "pre-dump-\(label).log"] + (store?.arg ?? [])
            if let prev { args += ["--prev-images-dir", "../" + prev] }
            try ctx.cryo(args, log: "\(mode)-\(ctx.iteration)-\(label)-cli", passFd: store?.fd)
            prev = "img-\(ctx.iteration)-\(label)"
            // Let the workload run (and write) between snapshots.
            usleep(50_000)
        }
        return prev!
    }
}
