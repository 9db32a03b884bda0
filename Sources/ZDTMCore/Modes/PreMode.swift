import Engine
import Foundation
import Glibc

/// The track store a multi-step mode holds for one iteration: zdtm owns the socket, as a
/// container runtime would, and hands it to each cryo as an inherited fd. Closing it ends the
/// tracking it holds.
final class TrackStoreHolder {
    let fd: Int32
    init() throws {
        do { fd = try TrackStore.makeSocket() } catch { throw ModeError.check("cannot create the track store: \(error)") }
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
        try PlainMode().waitGone(ctx.pid)
        try ctx.restore(images: final)
    }

    /// Runs the pre-dumps and the final dump; returns the final images folder.
    static func preDumpsAndDump(_ ctx: CaseContext, mode: String) throws -> String {
        let store = try TrackStoreHolder()
        var prev: String?
        for n in 1...max(1, ctx.preDumps) {
            let label = "pre\(n)"
            let images = try ctx.imagesDir(label)
            var args = ["pre-dump", "-t", String(ctx.pid), "-D", images, "-v4", "-o", "pre-dump-\(label).log"] + store.arg
            if let prev { args += ["--prev-images-dir", "../" + prev] }
            try ctx.cryo(args, log: "\(mode)-\(ctx.iteration)-\(label)-cli", passFd: store.fd)
            prev = "img-\(ctx.iteration)-\(label)"
            // Let the workload run (and write) between snapshots.
            usleep(50_000)
        }
        let final = try ctx.imagesDir("dump")
        try ctx.dump(images: final, extra: ["--track-mem", "--prev-images-dir", "../" + prev!] + store.arg, label: "final", passFd: store.fd)
        return final
    }
}

/// Snapshots of a running workload: N dumps with --leave-running, each incremental on the
/// previous, then a final dump and a restore from the last one.
public struct SnapsMode: CRMode {
    public let name = "snaps"
    public let summary = "N snapshot dumps with --leave-running (--pre, default 2), final dump, restore from the last"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let store = try TrackStoreHolder()
        var prev: String?
        for n in 1...max(1, ctx.preDumps) {
            let label = "snap\(n)"
            let images = try ctx.imagesDir(label)
            var extra = ["--leave-running", "--track-mem"] + store.arg
            if let prev { extra += ["--prev-images-dir", "../" + prev] }
            try ctx.dump(images: images, extra: extra, label: label, passFd: store.fd)
            prev = "img-\(ctx.iteration)-\(label)"
            usleep(50_000)
        }
        let final = try ctx.imagesDir("dump")
        try ctx.dump(images: final, extra: ["--track-mem", "--prev-images-dir", "../" + prev!] + store.arg, label: "final", passFd: store.fd)
        try PlainMode().waitGone(ctx.pid)
        try ctx.restore(images: final)
    }
}

/// Like pre, then `cryo dedup` on the final images before restoring: restore must not notice.
public struct DedupMode: CRMode {
    public let name = "dedup"
    public let summary = "like pre, plus cryo dedup on the chain before restore"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let final = try PreMode.preDumpsAndDump(ctx, mode: name)
        try ctx.cryo(["dedup", "-D", final, "-v4", "-o", "dedup.log"], log: "dedup-\(ctx.iteration)-cli")
        try PlainMode().waitGone(ctx.pid)
        try ctx.restore(images: final)
    }
}
