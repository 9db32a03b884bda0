import Engine
import Foundation
import Glibc

/// zdtm.py's --fault N: cryo is told to fail at a fault point (CRYO_FAULT), and the mode
/// checks what the failure left. A dump that failed leaves the tree running and unchanged (the
/// runner's records before and after the mode compare it), and a second dump and restore
/// pass. A restore that failed leaves no process of the tree, and a second restore passes.
public struct FaultMode: CRMode {
    public let point: FaultPoint
    public var name: String { "fault-\(point.rawValue)" }
    public var summary: String { "cryo fails at \(point.name) (CRYO_FAULT=\(point.rawValue)); check what is left, then C/R again" }
    public init(point: FaultPoint) { self.point = point }

    public func checkpointRestore(_ ctx: CaseContext) throws {
        if point.isRestore { return try failedRestore(ctx) }
        let tree = PlainMode.treePids(ctx.pid)
        // Through a page server only a page server transfer can fail mid-transfer.
        let base: any CRMode = point == .midTransfer ? PageServerMode() : PlainMode()
        try expectFault(ctx, "the C/R") { try base.checkpointRestore(ctx) }
        // A workload whose tree changes by itself (ignore: tree) ends children on its own; it
        // checks them itself (fork00 reaps each with its own exit code), so only its root must stay.
        try Self.checkRunning(tree, mayEnd: ctx.workload.ignore.contains(.tree) ? Set(tree.dropFirst()) : [])
        try base.checkpointRestore(ctx)
    }

    /// Runs `step` with CRYO_FAULT set; it must fail, and at this fault point.
    func expectFault(_ ctx: CaseContext, _ what: String, _ step: () throws -> Void) throws {
        ctx.env[Fault.variable] = String(point.rawValue)
        defer { ctx.env[Fault.variable] = nil }
        do {
            try step()
            throw ModeError.check("cryo never reached fault point \(point.name): \(what) with CRYO_FAULT=\(point.rawValue) succeeded")
        } catch ModeError.commandFailed(let c, _, let log, _) {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            guard text.contains("fault injected at \(point.name)") else {
                throw ModeError.check("`\(c)` failed, but not at the injected fault (log \(log))")
            }
        }
    }

    /// Every process of the tree is there and not left stopped or traced.
    static func checkRunning(_ pids: [Int32], mayEnd: Set<Int32> = []) throws {
        let proc = ProcReader()
        for pid in pids {
            guard let st = try? proc.stat(pid: pid) else {
                if mayEnd.contains(pid) { continue }
                throw ModeError.check("pid \(pid) is gone after the failed dump")
            }
            if st.isZombie { continue }  // it may have ended by itself; the workload says if that is wrong
            if st.isStopped { throw ModeError.check("pid \(pid) is left stopped (state \(st.state)) after the failed dump") }
            if let status = try? proc.status(pid: pid), status.tracerPid != 0 {
                throw ModeError.check("pid \(pid) is still traced by \(status.tracerPid) after the failed dump")
            }
        }
    }

    func failedRestore(_ ctx: CaseContext) throws {
        let images = ctx.dir + "/dump-\(ctx.iteration)"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        try ctx.dump(images: images)
        try PlainMode.waitGone(ctx.dumpedTree)
        try expectFault(ctx, "cryo restore") { try ctx.restore(images: images) }
        // Nothing of the tree may be left: no process, no zombie under any of its pids.
        do { try PlainMode.waitGone(ctx.dumpedTree) } catch {
            throw ModeError.check("after the failed restore: \(error)")
        }
        try ctx.restore(images: images)
    }
}
