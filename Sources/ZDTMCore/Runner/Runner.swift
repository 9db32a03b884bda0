import CKernel
import Engine
import Foundation
import Glibc
import Logging

/// One cell of the matrix: a workload in a flavour and a mode.
public struct CaseSpec: Sendable {
    public var workload: Workload
    public var flavour: any Flavour
    public var mode: any CRMode
    public var iterations: Int
    public var id: String { "\(workload.name) × \(flavour.name) × \(mode.name)" }
    public init(workload: Workload, flavour: any Flavour, mode: any CRMode, iterations: Int) {
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
    /// Kept for failures only.
    public var dir: String?
    public var commands: [String]
    public init(spec: CaseSpec, outcome: Outcome, reason: String, seconds: Double, dir: String?, commands: [String]) {
        self.spec = spec; self.outcome = outcome; self.reason = reason; self.seconds = seconds; self.dir = dir; self.commands = commands
    }
}

public struct RunOptions: Sendable {
    public var binDir: String
    public var cryo: String
    public var runDir: String
    public var keepGoing = false
    public var parallel = 1
    public init(binDir: String, cryo: String, runDir: String) { self.binDir = binDir; self.cryo = cryo; self.runDir = runDir }
}

public final class Runner: @unchecked Sendable {
    let options: RunOptions
    let log = Logger(label: "zdtm")
    let lock = NSLock()
    private var results: [CaseResult] = []
    private var stop = false
    /// Called as each case ends (console progress).
    public var onResult: (@Sendable (CaseResult) -> Void)?

    public init(options: RunOptions) {
        self.options = options
        // Daemonized workloads (and restored trees) re-parent to us, so we can reap them by pid.
        _ = ck_prctl(36 /* PR_SET_CHILD_SUBREAPER */, 1, 0, 0, 0)
    }

    /// Runs every case; exclusive ones alone, the rest up to `parallel` at a time.
    public func run(_ specs: [CaseSpec]) -> [CaseResult] {
        let shared = specs.filter { !$0.workload.exclusive }
        let alone = specs.filter { $0.workload.exclusive }
        runPool(shared, width: max(1, options.parallel))
        runPool(alone, width: 1)
        return results
    }

    private var next = 0

    func runPool(_ specs: [CaseSpec], width: Int) {
        next = 0
        let group = DispatchGroup()
        for _ in 0..<min(width, specs.count) {
            group.enter()
            Thread.detachNewThread { [self] in
                while true {
                    lock.lock()
                    if stop || next >= specs.count { lock.unlock(); break }
                    let spec = specs[next]; next += 1
                    lock.unlock()
                    let r = runCase(spec)
                    lock.lock()
                    results.append(r)
                    if r.outcome == .fail && !options.keepGoing { stop = true }
                    lock.unlock()
                    onResult?(r)
                }
                group.leave()
            }
        }
        group.wait()
    }

    public func runCase(_ spec: CaseSpec) -> CaseResult {
        let t0 = Date()
        let w = spec.workload
        let dir = options.runDir + "/" + "\(w.name)-\(spec.flavour.name)-\(spec.mode.name)"
        try? FileManager.default.removeItem(atPath: dir)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var commands: [String] = []
        var tree: [Int32] = []
        func finish(_ outcome: Outcome, _ reason: String) -> CaseResult {
            var outcome = outcome, reason = reason
            // Nothing may outlive the case.
            let strays = reapStrays(tree)
            if !strays.isEmpty && outcome != .fail {
                outcome = .fail
                reason = "stray processes: " + strays.joined(separator: ", ")
            }
            if outcome == .fail, let why = w.xfail[spec.mode.name] {
                outcome = .xfail
                reason = "\(reason) (expected: \(why))"
            }
            let keep = outcome == .fail || outcome == .xfail
            if !keep { try? FileManager.default.removeItem(atPath: dir) }
            return CaseResult(spec: spec, outcome: outcome, reason: reason, seconds: Date().timeIntervalSince(t0),
                              dir: keep ? dir : nil, commands: commands)
        }

        let binary = w.externalPath ?? (options.binDir + "/" + w.name)
        guard access(binary, X_OK) == 0 else { return finish(.fail, "no executable workload at \(binary)") }
        let pidfile = dir + "/pid", outfile = dir + "/out"
        let starter: Int32
        do {
            starter = try spec.flavour.start(binary: binary, args: ["--pidfile=\(pidfile)", "--outfile=\(outfile)"] + w.args,
                                             dir: dir, log: dir + "/start.log")
        } catch { return finish(.fail, "start: \(error)") }
        guard let st = Subprocess.wait(starter, timeout: w.timeout) else {
            kill(starter, SIGKILL); _ = Subprocess.wait(starter, timeout: 5)
            return finish(.fail, "workload did not finish set-up within \(w.timeout) s")
        }
        if Subprocess.exitCode(st) != 0 {
            return finish(.fail, "set-up failed (exit \(Subprocess.exitCode(st))): \(readTrimmed(outfile) ?? "no outfile")")
        }
        guard let pidText = readTrimmed(pidfile), let pid = Int32(pidText) else {
            return finish(.fail, "no pid in \(pidfile)")
        }
        let ignore = Set(w.ignore)
        let before: VisibleState
        do { before = try StateRecorder.record(root: pid) } catch {
            return finish(.fail, "cannot record state: \(error)")
        }
        tree = before.pids
        for i in 1...max(1, spec.iterations) {
            let ctx = CaseContext(workload: w, flavour: spec.flavour.name, dir: dir, cryo: options.cryo, pid: pid, iteration: i)
            do { try spec.mode.checkpointRestore(ctx) } catch {
                commands += ctx.commands
                return finish(.fail, "iteration \(i): \(spec.mode.name): \(error)")
            }
            commands += ctx.commands
            let after: VisibleState
            do { after = try StateRecorder.record(root: pid) } catch {
                return finish(.fail, "iteration \(i): state after \(spec.mode.name): \(error)")
            }
            let diffs = StateRecorder.compare(before, after, ignore: ignore)
            if !diffs.isEmpty {
                return finish(.fail, "iteration \(i): state changed: " + diffs.prefix(5).joined(separator: "; ")
                              + (diffs.count > 5 ? " (+\(diffs.count - 5) more)" : ""))
            }
        }
        kill(pid, SIGTERM)
        guard let end = Subprocess.wait(pid, timeout: w.timeout) else {
            return finish(.fail, "workload did not exit within \(w.timeout) s of SIGTERM")
        }
        let result = readTrimmed(outfile) ?? ""
        if result == "PASS" && Subprocess.exitCode(end) == 0 { return finish(.pass, "") }
        if result.isEmpty { return finish(.fail, "no result in outfile (exit \(Subprocess.exitCode(end)))") }
        return finish(.fail, result)
    }

    /// Kills and reaps whatever of `tree` is still there, and any other child of ours that is
    /// not a case running in parallel. Returns "PID (comm)" for each.
    func reapStrays(_ tree: [Int32]) -> [String] {
        var strays: [String] = []
        let proc = ProcReader()
        for pid in tree where kill(pid, 0) == 0 {
            let comm = (try? proc.stat(pid: pid).comm) ?? "?"
            if (try? proc.stat(pid: pid).isZombie) == true { _ = Subprocess.wait(pid, timeout: 1); continue }
            strays.append("\(pid) (\(comm))")
            kill(pid, SIGKILL)
            _ = Subprocess.wait(pid, timeout: 5)
        }
        return strays
    }

    func readTrimmed(_ path: String) -> String? {
        guard let s = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return s.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
