/// One cell of the matrix: a workload in a flavour and a mode.
public struct CaseSpec: Sendable {
    public var workload: Workload
    public var flavour: any Flavour
    public var mode: any CRMode
    public var iterations: Int
    public var id: String { "\(workload.name) × \(flavour.name) × \(mode.name)" }
    /// The case folder's name under the run folder.
    public var dirName: String { "\(workload.name)-\(flavour.name)-\(mode.name)" }
    public init(workload: Workload, flavour: any Flavour, mode: any CRMode, iterations: Int = 1) {
        self.workload = workload; self.flavour = flavour; self.mode = mode; self.iterations = iterations
    }
}

public enum Outcome: String, Sendable {
    case pass = "PASS", fail = "FAIL", xfail = "XFAIL", skip = "SKIP"
}

public struct CaseResult: Sendable {
    public var spec: CaseSpec
    public var outcome: Outcome
    public var reason: String
    public var seconds: Double
    /// The case folder, kept for failures only.
    public var dir: String?
    /// How the workload was started, then every cryo command the mode ran.
    public var commands: [RecordedCommand]
    /// Milliseconds per phase summed over the case's cryo logs ("dump: memory" -> 12.3), from
    /// the per-task timing lines cryo writes at -v4.
    public var phases: [String: Double] = [:]
    public init(spec: CaseSpec, outcome: Outcome, reason: String, seconds: Double, dir: String? = nil, commands: [RecordedCommand] = []) {
        self.spec = spec; self.outcome = outcome; self.reason = reason; self.seconds = seconds; self.dir = dir; self.commands = commands
    }
}

public struct RunOptions: Sendable {
    public var binDir: String
    public var cryo: String
    public var runDir: String
    public var keepGoing = false
    public var parallel = 1
    /// Pre-dumps (pre, dedup) or snapshot dumps (snaps) before the final dump.
    public var preDumps = 2
    /// Keep a case's folder (images, logs): always, never, or only when it failed (zdtm.py's --keep-img).
    public enum KeepImages: String, Sendable, CaseIterable { case always, never, failed }
    public var keepImages: KeepImages = .failed
    /// With a transfer mode (page-server, lazy...): "pre" or "snaps" when zdtm.py's --pre N or
    /// --snaps asked for incremental steps before the final dump.
    public var incremental: String?
    /// Judge by the program's own verdict only, without zdtm's comparison of visible state:
    /// what CRIU's zdtm.py does in flavour h. For measuring another checkpointer (CRIU itself)
    /// by CRIU's own rules; cryo is always run with the comparison.
    public var compareState = true
    public init(binDir: String, cryo: String, runDir: String) { self.binDir = binDir; self.cryo = cryo; self.runDir = runDir }
}
