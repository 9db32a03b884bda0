import Foundation

/// Holds each thread's core entry until the end of the dump and writes it then, with the
/// signal queues read again: a signal sent to the frozen tree while its pages were copied
/// is queued, and must be in the images when the dump kills the tree, not lost with it.
/// Only the short stretch between this read and the kill is left uncovered.
final class CoreImages {
    /// pid and tid as cryo sees them; imageID as the images name the thread.
    private var cores: [(pid: Int32, tid: Int32, imageID: Int32, core: Img_CoreEntry)] = []

    func add(pid: Int32, tid: Int32, imageID: Int32, core: Img_CoreEntry) { cores.append((pid, tid, imageID, core)) }

    func writeAll(images: ImageDirectory) throws {
        for (pid, tid, imageID, var core) in cores {
            if let q = try Self.queue(tid, shared: false) { core.threadCore.signalsP = q }
            if tid == pid, let q = try Self.queue(pid, shared: true) { core.tc.signalsS = q }
            try images.write(.core, id: Int(imageID), entry: core)
        }
        cores = []
    }

    /// The queue, or nil when it is empty (the image then has no entry, as CRIU writes it).
    static func queue(_ tid: Int32, shared: Bool) throws -> Img_SignalQueueEntry? {
        var q = Img_SignalQueueEntry()
        q.signals = try Ptrace.peekSiginfo(tid, shared: shared).map { var e = Img_SiginfoEntry(); e.siginfo = Data($0); return e }
        return q.signals.isEmpty ? nil : q
    }
}
