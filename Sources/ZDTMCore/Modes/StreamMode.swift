import Engine
import Foundation
import Glibc

/// The whole checkpoint as one stream through a pipe: `cryo restore --stream-from` starts
/// first on the read end, `cryo dump --stream-to` writes to the other; no image of the final
/// dump touches a disk. With --pre N or --snaps the earlier snapshots go to folders and the
/// stream carries the parent link to the last of them (its in-parent pages are read there).
public struct StreamMode: CRMode {
    public let name = "stream"
    public let summary = "dump --stream-to a pipe, restore --stream-from it (images in memory); --pre/--snaps: earlier snapshots in folders, the final one streamed"
    public init() {}

    public func checkpointRestore(_ ctx: CaseContext) throws {
        let store = ctx.incremental == nil ? nil : try TrackStoreHolder.make()
        var extra: [String] = []
        switch ctx.incremental {
        case "pre": extra = ["--track-mem", "--prev-images-dir", "../" + (try PreMode.preDumps(ctx, mode: name, store: store))]
        case "snaps": extra = ["--track-mem", "--prev-images-dir", "../" + (try SnapsMode.snapshots(ctx, store: store))]
        default: break
        }
        // Holds only logs and restore.pid; anchors the relative parent link on both sides.
        let images = try ctx.imagesDir("dump")
        var p: [Int32] = [-1, -1]
        guard pipe(&p) == 0 else { throw ModeError.check("pipe: \(String(cString: strerror(errno)))") }
        // Children get the ends they are given and closefrom the rest; exec must not leak them.
        for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var writeEnd = p[1]
        defer { if writeEnd >= 0 { close(writeEnd) } }
        let pidfile = images + "/restore.pid"
        let tag = "restore-\(ctx.iteration)-cli"
        let restore: Int32
        do {
            restore = try ctx.spawn([ctx.cryo] + CryoCommands.restore(images: images, pidfile: pidfile, extra: ["--stream-from", String(Subprocess.passedFd)] + ctx.workload.opts),
                                    log: tag, passFd: p[0])
        } catch { close(p[0]); throw error }
        close(p[0])
        var reaped = false
        defer { if !reaped { Subprocess.kill9(restore) } }
        let session = (try? ProcReader().stat(pid: ctx.pid))?.session
        // fd 3 is the track store when there is one, the stream after it.
        let streamFd = Subprocess.passedFd + (store == nil ? 0 : 1)
        try ctx.dump(images: images, extra: ["--stream-to", String(streamFd)] + extra + (store?.arg ?? []), label: ctx.incremental == nil ? nil : "final",
                     passFd: store?.fd ?? writeEnd, moreFds: store == nil ? [] : [writeEnd])
        close(writeEnd)
        writeEnd = -1
        // The restore waits for the dumped pids to be free; zdtm is the reaper that frees them.
        // Reaping only (no waiting for the pids to vanish): the restore takes them at once.
        let deadline = Date().addingTimeInterval(120)
        var status: Int32?
        while status == nil {
            for p in ctx.dumpedTree { var ws: Int32 = 0; _ = waitpid(p, &ws, WNOHANG) }
            StreamMode.reapZombies(session: session)
            status = try Subprocess.wait(restore, timeout: 0.02)
            if status == nil && Date() > deadline {
                throw ModeError.check("cryo restore --stream-from (pid \(restore)) still running 120 s after the dump (see \(ctx.dir)/\(tag).log)")
            }
        }
        let st = status!
        reaped = true
        if Subprocess.exitCode(st) != 0 {
            let tail = ((try? String(contentsOfFile: ctx.dir + "/\(tag).log", encoding: .utf8)) ?? "")
                .split(separator: "\n").suffix(5).joined(separator: " | ")
            throw ModeError.check("cryo restore --stream-from \(Subprocess.describe(st)): \(tail)")
        }
        guard let text = try? String(contentsOfFile: pidfile, encoding: .utf8),
              let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ModeError.check("restore wrote no pid to \(pidfile)")
        }
        try ctx.acceptRestored(pid)
    }

    /// Children the tree forked just before the dump are not in ctx.dumpedTree (the images,
    /// which list them, went down the pipe): their zombies, now ours, are told by the tree's
    /// session, which no other case shares.
    static func reapZombies(session: Int32?) {
        guard let session, session != getsid(0) else { return }
        let proc = ProcReader()
        for c in (try? proc.allChildren(pid: getpid())) ?? [] {
            guard let st = try? proc.stat(pid: c), st.state == "Z", st.session == session else { continue }
            var ws: Int32 = 0
            _ = waitpid(c, &ws, WNOHANG)
        }
    }
}
