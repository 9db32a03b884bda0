import ArgumentParser
import Engine
import Foundation
import ZDTMCore

struct Common: ParsableArguments {
    @Option(help: "Folder of suite files (default: Suites/ of the source tree zdtm was built in, else ./Suites).")
    var suitesDir: String?

    @Option(name: .customShort("v", allowingJoined: true), help: "Log verbosity 0..4.")
    var verbosity: Int = 1

    func catalogue() throws -> Catalogue {
        try Catalogue(directory: suitesDir ?? Locations.suitesDir())
    }
}

@main
struct ZDTM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zdtm",
        abstract: "Run workloads through checkpoint/restore and check they come back intact.",
        subcommands: [List.self, Run.self, Repro.self])
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List workloads and their flags.")
    @OptionGroup var common: Common
    @Option(help: "Only the workloads of this suite.") var suite: String?

    func run() throws {
        let cat = try common.catalogue()
        let names = try suite.map { try cat.suite($0).workloads } ?? cat.workloads.keys.sorted()
        let width = max(12, names.map(\.count).max() ?? 0)
        for n in names {
            guard let w = cat.workloads[n] else { continue }
            var flags: [String] = []
            flags.append("flavours=" + (w.flavours.isEmpty ? "all" : w.flavours.joined(separator: ",")))
            flags.append("modes=" + (w.modes.isEmpty ? "all" : w.modes.joined(separator: ","))
                         + (w.excludeModes.isEmpty ? "" : " exclude=" + w.excludeModes.joined(separator: ",")))
            if w.exclusive { flags.append("exclusive") }
            flags.append("timeout=\(Int(w.timeout))s")
            if !w.args.isEmpty { flags.append("args=" + w.args.joined(separator: " ")) }
            if !w.ignore.isEmpty { flags.append("ignore=" + w.ignore.map(\.rawValue).sorted().joined(separator: ",")) }
            for (m, r) in w.xfail.sorted(by: { $0.key < $1.key }) { flags.append("xfail[\(m)]=\"\(r)\"") }
            print(n.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + flags.joined(separator: " ") + "  # " + w.description)
        }
        if suite == nil {
            print("\nsuites: " + cat.suites.values.sorted { $0.name < $1.name }.map { "\($0.name) (\($0.workloads.count))" }.joined(separator: ", "))
            print("flavours: " + Flavours.all.map { "\($0.name) (\($0.summary))" }.joined(separator: ", ")
                  + "; planned: " + Flavours.planned.joined(separator: ", "))
            print("modes: " + Modes.all.map { "\($0.name) (\($0.summary))" }.joined(separator: ", ")
                  + "; planned: " + Modes.planned.joined(separator: ", "))
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run workloads in flavours and modes.")
    @OptionGroup var common: Common
    @Option(name: .customShort("t"), help: "Workload to run (repeatable).") var test: [String] = []
    @Option(name: .customShort("T"), help: "Run workloads whose name matches this regular expression.") var testRegex: String?
    @Option(help: "Run a suite (default: smoke when no -t/-T/--external is given).") var suite: String?
    @Option(name: .customShort("f"), help: "Flavour (repeatable).") var flavour: [String] = []
    @Option(help: "Mode (repeatable).") var mode: [String] = []
    @Option(help: "C/R cycles (record, mode, compare) per case before the final check.") var iters: Int = 1
    @Option(help: "Pre-dumps (modes pre, dedup) or snapshots (mode snaps) before the final dump (default 2). Alone, as in CRIU's zdtm.py, it selects mode pre.") var pre: Int?
    @Flag(help: "zdtm.py's spelling: mode snaps (snapshot dumps instead of pre-dumps).") var snaps = false
    @Flag(help: "zdtm.py's spelling: mode dedup.") var dedup = false
    @Flag(help: "zdtm.py's spelling: mode page-server.") var pageServer = false
    @Flag(help: "zdtm.py's spelling: mode lazy.") var lazyPages = false
    @Flag(help: "zdtm.py's spelling: mode remote-lazy.") var remoteLazyPages = false
    @Flag(help: "zdtm.py's spelling: mode remote (image proxy and cache).") var remote = false
    @Flag(help: "zdtm.py's spelling: mode stream.") var stream = false
    @Option(help: "zdtm.py's --fault: make cryo fail at this fault point (1 after-freeze, 2 mid-pages, 3 files, 4 restore-tasks, 5 mid-transfer, 6 after-files; repeatable) and check what the failure leaves, then C/R again.") var fault: [String] = []
    @Flag(help: "Go on after a failure.") var keepGoing = false
    @Flag(help: "Judge cases by the program's own verdict only, without comparing visible state (what CRIU's zdtm.py does in flavour h): for measuring another checkpointer, such as CRIU given with --cryo.") var noStateCheck = false
    @Option(help: "Write JUnit XML (zdtm.xml) and an HTML page (zdtm.html) into this folder.") var report: String?
    @Option(help: "Keep each case's folder (images, logs): always, never or failed (zdtm.py's --keep-img).") var keepImg: String = "failed"
    @Option(help: "Run only share I of N of the selected cases (I from 1), so CI can split a run across machines.") var shard: String?
    @Option(help: "Run a binary that speaks the zdtm protocol, by path (repeatable).") var external: [String] = []
    @Option(name: .customLong("external-dir"), help: "Run every program in a folder of zdtm binaries (CRIU's test/zdtm/static), with its Makefile's arguments and .desc files (repeatable).") var externalDir: [String] = []
    @Option(help: "Folder with the workload binaries (default: the folder of zdtm).") var binDir: String?
    @Option(help: "The cryo binary (default: cryo next to zdtm).") var cryo: String?
    @Option(name: .customShort("p"), help: "Cases to run in parallel (exclusive ones still run alone).") var parallel: Int = 1
    @Option(help: "Folder for case outputs (default: a new /tmp/zdtm-XXXXXX).") var runDir: String?

    func validate() throws {
        if parallel < 1 { throw ValidationError("-p \(parallel): must be at least 1") }
        if iters < 1 { throw ValidationError("--iters \(iters): must be at least 1") }
        if RunOptions.KeepImages(rawValue: keepImg) == nil { throw ValidationError("--keep-img \(keepImg): always, never or failed") }
        if let shard, Self.parseShard(shard) == nil { throw ValidationError("--shard \(shard): give I/N with 1 <= I <= N") }
        if let pre, pre < 1 { throw ValidationError("--pre \(pre): must be at least 1") }
        do { _ = try spellings.modes(explicit: mode) } catch { throw ValidationError("\(error)") }
        for f in fault where FaultPoint.parse(f) == nil {
            throw ValidationError("--fault \(f): no such fault point (" + FaultPoint.allCases.map { "\($0.rawValue) \($0.name)" }.joined(separator: ", ") + ")")
        }
    }

    /// "2/5" -> (2, 5)
    static func parseShard(_ s: String) -> (Int, Int)? {
        let f = s.split(separator: "/")
        guard f.count == 2, let i = Int(f[0]), let n = Int(f[1]), n >= 1, i >= 1, i <= n else { return nil }
        return (i, n)
    }

    var spellings: CriuSpellings {
        var s = CriuSpellings()
        s.pre = pre; s.snaps = snaps; s.dedup = dedup; s.pageServer = pageServer; s.lazyPages = lazyPages
        s.remoteLazyPages = remoteLazyPages; s.remote = remote; s.stream = stream
        return s
    }

    func run() throws {
        try CryoLog.bootstrap(verbosity: common.verbosity, file: nil)
        let t0 = Date()
        let cat = try common.catalogue()
        var sel = Selection()
        sel.tests = test; sel.regex = testRegex; sel.suite = suite; sel.externals = external; sel.externalDirs = externalDir
        sel.flavours = CriuSpellings.flavours(flavour); sel.modes = fault.isEmpty ? try spellings.modes(explicit: mode) : fault.compactMap { FaultPoint.parse($0).map { "fault-\($0.rawValue)" } }; sel.iterations = iters
        var (specs, skipped, suiteObj) = try sel.cases(in: cat)
        if let shard, let (i, n) = Self.parseShard(shard) {
            specs = specs.enumerated().filter { $0.offset % n == i - 1 }.map(\.element)
            skipped = skipped.enumerated().filter { $0.offset % n == i - 1 }.map(\.element)
        }

        let binDir = binDir ?? Locations.selfDir()
        let runDir: String
        if let d = self.runDir {
            try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            runDir = d
        } else {
            runDir = try Locations.makeRunDir()
        }
        var opts = RunOptions(binDir: binDir, cryo: cryo ?? binDir + "/cryo", runDir: runDir)
        opts.keepGoing = keepGoing
        opts.compareState = !noStateCheck
        opts.parallel = parallel
        opts.keepImages = RunOptions.KeepImages(rawValue: keepImg) ?? .failed
        opts.preDumps = pre ?? 2
        opts.incremental = spellings.incremental
        let runner = try Runner(options: opts)
        let progress = Progress(total: specs.count)
        runner.onResult = { r in
            print(progress.tick(r) + r.outcome.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0) + " \(r.spec.id)"
                  + String(format: " (%.2fs)", r.seconds) + (r.reason.isEmpty ? "" : ": " + r.reason))
            fflush(nil)
        }
        print("zdtm: \(specs.count) case(s)\(parallel > 1 ? ", \(parallel) in parallel" : ""), outputs in \(runDir)")
        fflush(nil)
        let results = runner.run(specs) + skipped
        print(Report.summary(results, wallSeconds: Date().timeIntervalSince(t0)))
        if let dir = report {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Report.junit(results, suite: suiteObj?.name ?? "zdtm").write(toFile: dir + "/zdtm.xml", atomically: true, encoding: .utf8)
            try Report.html(results, suite: suiteObj?.name ?? "zdtm", wallSeconds: Date().timeIntervalSince(t0))
                .write(toFile: dir + "/zdtm.html", atomically: true, encoding: .utf8)
        }
        // A run folder with nothing kept in it is only noise; one we were given stays.
        if self.runDir == nil, ((try? FileManager.default.contentsOfDirectory(atPath: runDir)) ?? []).isEmpty {
            try? FileManager.default.removeItem(atPath: runDir)
        }
        if results.contains(where: { $0.outcome == .fail }) { throw ExitCode(1) }
    }
}

/// "[12/60, 1 failing] " before each result line of a long run.
final class Progress: @unchecked Sendable {
    let total: Int
    private var done = 0, failing = 0
    private let lock = NSLock()
    init(total: Int) { self.total = total }
    func tick(_ r: CaseResult) -> String {
        lock.lock(); defer { lock.unlock() }
        done += 1
        if r.outcome == .fail { failing += 1 }
        return "[\(done)/\(total)" + (failing > 0 ? ", \(failing) failing" : "") + "] "
    }
}
