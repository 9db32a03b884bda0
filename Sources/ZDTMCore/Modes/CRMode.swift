import Foundation

/// What a mode gets to work with for one case.
public final class CaseContext: @unchecked Sendable {
    public let workload: Workload
    public let flavour: String
    public let dir: String
    public let cryo: String
    /// The workload's root pid; a mode that restores must keep it (cryo restores the same pid).
    public internal(set) var pid: Int32
    public let iteration: Int
    /// Every command a mode ran, for reproducing a failure by hand.
    public private(set) var commands: [String] = []

    init(workload: Workload, flavour: String, dir: String, cryo: String, pid: Int32, iteration: Int) {
        self.workload = workload; self.flavour = flavour; self.dir = dir; self.cryo = cryo
        self.pid = pid; self.iteration = iteration
    }

    /// Runs `cryo ARGS`, logging to DIR/NAME.log; throws with the log's tail on failure.
    public func cryo(_ args: [String], log name: String, timeout: Double = 120) throws {
        let log = dir + "/" + name + ".log"
        commands.append(([cryo] + args).joined(separator: " "))
        let st = try Subprocess.run(cryo, args, log: log, timeout: timeout)
        let code = Subprocess.exitCode(st)
        if code != 0 {
            let tail = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").suffix(5).joined(separator: " | ")
            throw ModeError.commandFailed(command: commands.last!, code: code, tail: tail)
        }
    }
}

public enum ModeError: Error, CustomStringConvertible {
    case commandFailed(command: String, code: Int32, tail: String)
    case unknown(name: String, known: [String])
    case check(String)

    public var description: String {
        switch self {
        case .commandFailed(let c, let code, let t): return "`\(c)` exited \(code): \(t)"
        case .unknown(let n, let k): return "no mode '\(n)' (known: \(k.joined(separator: ", ")))"
        case .check(let s): return s
        }
    }
}

/// One way of taking a workload through checkpoint and restore. Adding a mode is adding a
/// type and listing it in `Modes.all`.
public protocol CRMode: Sendable {
    var name: String { get }
    var summary: String { get }
    /// Between the two state records: checkpoint the workload and bring it back (or not).
    func checkpointRestore(_ ctx: CaseContext) throws
}

public enum Modes {
    public static let all: [any CRMode] = [NoCRMode(), PlainMode()]

    public static func named(_ name: String) throws -> any CRMode {
        guard let m = all.first(where: { $0.name == name }) else { throw ModeError.unknown(name: name, known: all.map(\.name)) }
        return m
    }
}
