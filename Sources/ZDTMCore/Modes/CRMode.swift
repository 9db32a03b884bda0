import Foundation
import Engine

public enum ModeError: Error, CustomStringConvertible, Equatable {
    case commandFailed(command: String, code: Int32, log: String, tail: String)
    case unknown(name: String, available: [String], planned: [String])
    case check(String)

    public var description: String {
        switch self {
        case .commandFailed(let c, let code, let log, let t): return "`\(c)` exited \(code) (log \(log)): \(t)"
        case .unknown(let n, let a, let p):
            let later = p.isEmpty ? "" : "; planned, not implemented yet: \(p.joined(separator: ", "))"
            return "no mode '\(n)' (available: \(a.joined(separator: ", "))\(later))"
        case .check(let s): return s
        }
    }
}

/// One way of taking a workload through checkpoint and restore. Adding a mode is adding a
/// type in its own file and listing it in `Modes.all`. The runner records the visible state
/// before and after `checkpointRestore`, so a mode only has to checkpoint and bring back.
public protocol CRMode: Sendable {
    var name: String { get }
    var summary: String { get }
    /// Checkpoint the workload (ctx.pid) and bring it back, or not. Must leave the tree
    /// running under the same pids, or update ctx.pid. Run cryo only through ctx so the
    /// commands are recorded for `zdtm repro`.
    func checkpointRestore(_ ctx: CaseContext) throws
}

public enum Modes {
    public static let all: [any CRMode] = [NoCRMode(), PlainMode(), PreMode(), SnapsMode(), DedupMode(), PageServerMode(), LazyMode(), RemoteLazyMode(), StreamMode(), RemoteMode()]
    /// Named in the design and accepted in suite files, but not runnable yet.
    public static let planned: [String] = []
    public static var known: Set<String> { Set(all.map(\.name) + planned) }

    public static func named(_ name: String) throws -> any CRMode {
        if name.hasPrefix("fault-"), let p = FaultPoint.parse(String(name.dropFirst(6))) { return FaultMode(point: p) }
        guard let m = all.first(where: { $0.name == name }) else {
            throw ModeError.unknown(name: name, available: all.map(\.name), planned: planned)
        }
        return m
    }
}
