import Foundation
import Engine
import Glibc

/// A command a mode ran, kept so a failing case can be reproduced by hand.
public struct RecordedCommand: Equatable, Sendable {
    public var argv: [String]
    public var log: String
    /// How long it ran (0 for the workload's start line).
    public var seconds: Double = 0
    public init(argv: [String], log: String, seconds: Double = 0) { self.argv = argv; self.log = log; self.seconds = seconds }
    /// Shell-quoted, ready to paste.
    public var shell: String { argv.map(Self.quote).joined(separator: " ") }

    static func quote(_ s: String) -> String {
        if !s.isEmpty && s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:,+@%".contains($0) }) { return s }
        return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}

/// The cryo command lines modes use, in one place so modes and `zdtm repro` agree.
public enum CryoCommands {
    public static func dump(pid: Int32, images: String, log: String = "dump.log", extra: [String] = []) -> [String] {
        ["dump", "-t", String(pid), "-D", images, "-v4", "-o", log] + extra
    }
    public static func restore(images: String, pidfile: String, log: String = "restore.log", extra: [String] = []) -> [String] {
        ["restore", "-D", images, "-d", "--pidfile", pidfile, "-v4", "-o", log] + extra
    }
}

/// What a mode gets to work with for one iteration of one case.
public final class CaseContext: @unchecked Sendable {
    public let workload: Workload
    public let flavour: String
    /// The case folder; modes put images under it (kept only if the case fails).
    public let dir: String
    public let cryo: String
    /// The workload's root pid; a mode that restores must keep it (cryo restores the same pid).
    public var pid: Int32
    public let iteration: Int
    /// How many pre-dumps or snapshots a multi-step mode takes before the final dump.
    public var preDumps = 2
    /// Extra environment for the cryo commands (CRYO_FAULT for the fault modes).
    public var env: [String: String] = [:]
    /// "pre" or "snaps": a transfer mode takes that many pre-dumps or snapshots first (--pre N, --snaps).
    public var incremental: String?
    public private(set) var commands: [RecordedCommand] = []

    public init(workload: Workload, flavour: String, dir: String, cryo: String, pid: Int32, iteration: Int) {
        self.workload = workload; self.flavour = flavour; self.dir = dir; self.cryo = cryo
        self.pid = pid; self.iteration = iteration
    }

    /// A fresh images folder for this iteration, e.g. DIR/img-1-dump.
    public func imagesDir(_ label: String) throws -> String {
        let d = dir + "/img-\(iteration)-\(label)"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }

    /// Runs `cryo ARGS` in the case folder, output to DIR/NAME.log; throws with the log's
    /// tail when cryo fails.
    /// `passFd` is given to cryo as fd 3 (Subprocess.passedFd), e.g. the track store.
    public func cryo(_ args: [String], log name: String, timeout: Double = 120, passFd: Int32? = nil, moreFds: [Int32] = []) throws {
        let log = dir + "/" + name + ".log"
        let prefix = env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let cmd = RecordedCommand(argv: (prefix.isEmpty ? [] : ["env"] + prefix) + [cryo] + args, log: log)
        commands.append(cmd)
        let t0 = Date()
        defer { commands[commands.count - 1].seconds = Date().timeIntervalSince(t0) }
        let st = try Subprocess.run(cryo, args, cwd: dir, log: log, timeout: timeout, passFd: passFd, moreFds: moreFds, env: env)
        let code = Subprocess.exitCode(st)
        if code != 0 {
            let tail = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
                .split(separator: "\n").suffix(5).joined(separator: " | ")
            throw ModeError.commandFailed(command: cmd.shell, code: code, log: log, tail: tail)
        }
    }

    /// Starts `argv` (cryo, or a wrapper such as nsenter) in the background: a daemon a mode
    /// needs (lazy-pages). Output to DIR/NAME.log, recorded like the others; the caller ends it
    /// by pid and waits.
    public func spawn(_ argv: [String], log name: String, passFd: Int32? = nil) throws -> Int32 {
        let log = dir + "/" + name + ".log"
        commands.append(RecordedCommand(argv: argv + ["&"], log: log))
        return try Subprocess.spawn(argv[0], Array(argv.dropFirst()), cwd: dir, output: log, passFd: passFd)
    }

    /// `cryo dump` of the workload into `images`.
    /// `label` names the logs when a mode dumps more than once per iteration.
    /// The tree as it was just before the last dump: what must be gone before a restore.
    public private(set) var dumpedTree: [Int32] = []

    /// The dumped root's NSpid (outermost first); more levels than zdtm's own: a new pid namespace.
    public private(set) var dumpedRootNsPid: [Int32] = []
    /// Roots a restore reported, accepted or not: the runner kills them when the case fails.
    public private(set) var restoredRoots: [Int32] = []

    public func dump(images: String, extra: [String] = [], label: String? = nil, passFd: Int32? = nil, moreFds: [Int32] = []) throws {
        dumpedTree = PlainMode.treePids(pid)
        dumpedRootNsPid = (try? ProcReader().status(pid: pid))?.nsPid ?? []
        let log = label.map { "dump-\($0).log" } ?? "dump.log"
        let cli = "dump-\(iteration)" + (label.map { "-" + $0 } ?? "") + "-cli"
        try cryo(CryoCommands.dump(pid: pid, images: images, log: log, extra: extra + workload.opts), log: cli, passFd: passFd, moreFds: moreFds)
        let path = images.hasPrefix("/") ? images : dir + "/" + images
        if let d = try? ImageDirectory(path: path) { addListedTasks(d) }
    }

    /// A tree that forks all the time has tasks the walk before the dump never saw; the dump's
    /// own list has every one, and their zombies (ours to reap) would hold the group's pid.
    /// Pids inside a new pid namespace are not zdtm's: such a tree is its init's, walked already.
    public func addListedTasks(_ d: ImageDirectory) {
        guard !inNewPidNamespace, let ps = try? d.read(.pstree, as: Img_PstreeEntry.self) else { return }
        let seen = Set(dumpedTree)
        dumpedTree += ps.map { Int32(bitPattern: $0.pid) }.filter { !seen.contains($0) }
    }

    /// Whether the dumped root sits in a pid namespace below zdtm's (the ns flavour's init).
    var inNewPidNamespace: Bool {
        let own = (try? ProcReader().status(pid: getpid()))?.nsPid.count ?? 1
        return dumpedRootNsPid.count > own
    }

    /// Takes `p` as the restored root: the same pid, or, for a root in a new pid namespace,
    /// a new pid outside with the same pid inside at the same depth.
    public func acceptRestored(_ p: Int32) throws {
        restoredRoots.append(p)
        if p != pid {
            let inner = (try? ProcReader().status(pid: p))?.nsPid ?? []
            guard inNewPidNamespace, inner.count == dumpedRootNsPid.count, inner.last == dumpedRootNsPid.last else {
                throw ModeError.check("restored pid \(p) (\(inner.map(String.init).joined(separator: "/")) inside), expected \(pid) (\(dumpedRootNsPid.map(String.init).joined(separator: "/")))")
            }
        }
        pid = p
    }

    /// `cryo restore -d` from `images`; takes the restored root pid from its pidfile.
    public func restore(images: String, extra: [String] = []) throws {
        let pidfile = images + "/restore.pid"
        try cryo(CryoCommands.restore(images: images, pidfile: pidfile, extra: extra + workload.opts), log: "restore-\(iteration)-cli")
        guard let text = try? String(contentsOfFile: pidfile, encoding: .utf8),
              let p = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw ModeError.check("restore wrote no pid to \(pidfile)")
        }
        try acceptRestored(p)
    }
}
