import ArgumentParser
import Engine
import Foundation
import ZDTMCore

struct Common: ParsableArguments {
    @Option(help: "Folder of suite files (default: Suites/ of the source tree this zdtm was built from).")
    var suitesDir: String?

    @Option(name: .customShort("v", allowingJoined: true), help: "Log verbosity 0..4.")
    var verbosity: Int = 1

    func catalogue() throws -> Catalogue {
        try Catalogue(directory: suitesDir ?? Locations.suitesDir())
    }
}

enum Locations {
    static func selfDir() -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return (exe as NSString).deletingLastPathComponent
    }

    static func suitesDir() -> String {
        var dir = selfDir()
        while dir != "/" && !dir.isEmpty {
            if FileManager.default.fileExists(atPath: dir + "/Package.swift") && FileManager.default.fileExists(atPath: dir + "/Suites") {
                return dir + "/Suites"
            }
            dir = (dir as NSString).deletingLastPathComponent
        }
        return FileManager.default.currentDirectoryPath + "/Suites"
    }
}

@main
struct ZDTM: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "zdtm",
        abstract: "Run workloads through checkpoint/restore and check they come back intact.",
        subcommands: [List.self, Run.self])
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List workloads and their flags.")
    @OptionGroup var common: Common
    @Option(help: "Only the workloads of this suite.") var suite: String?

    func run() throws {
        let cat = try common.catalogue()
        let names = try suite.map { try cat.suite($0).workloads } ?? cat.workloads.keys.sorted()
        for n in names {
            guard let w = cat.workloads[n] else { continue }
            var flags: [String] = []
            flags.append("flavours=" + (w.flavours.isEmpty ? "all" : w.flavours.joined(separator: ",")))
            flags.append("modes=" + (w.modes.isEmpty ? "all" : w.modes.joined(separator: ",")) + (w.excludeModes.isEmpty ? "" : " -" + w.excludeModes.joined(separator: ",-")))
            if w.exclusive { flags.append("exclusive") }
            flags.append("timeout=\(Int(w.timeout))s")
            for (m, r) in w.xfail.sorted(by: { $0.key < $1.key }) { flags.append("xfail[\(m)]=\(r)") }
            print("\(n.padding(toLength: 14, withPad: " ", startingAt: 0)) \(flags.joined(separator: " "))  # \(w.description)")
        }
        if suite == nil {
            print("\nsuites: " + cat.suites.keys.sorted().joined(separator: ", "))
            print("flavours: " + Flavours.all.map { "\($0.name) (\($0.summary))" }.joined(separator: ", "))
            print("modes: " + Modes.all.map { "\($0.name) (\($0.summary))" }.joined(separator: ", "))
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run workloads in flavours and modes.")
    @OptionGroup var common: Common
    @Option(name: .customShort("t"), help: "Workload to run (repeatable).") var test: [String] = []
    @Option(name: .customShort("T"), help: "Run workloads whose name matches this regular expression.") var testRegex: String?
    @Option(help: "Run a suite (default: smoke when no -t/-T/--external is given).") var suite: String?
    @Option(name: .customShort("f"), help: "Flavour (repeatable): h.") var flavour: [String] = []
    @Option(help: "Mode (repeatable): nocr.") var mode: [String] = []
    @Option(help: "C/R cycles per case before the final check.") var iters: Int = 1
    @Flag(help: "Go on after a failure.") var keepGoing = false
    @Option(help: "Write JUnit XML (zdtm.xml) into this folder.") var report: String?
    @Option(help: "Run an external binary that speaks the zdtm protocol (repeatable).") var external: [String] = []
    @Option(help: "Folder with the workload binaries (default: next to zdtm).") var binDir: String?
    @Option(help: "The cryo binary (default: next to zdtm).") var cryo: String?
    @Option(name: .customShort("p"), help: "Cases to run in parallel (exclusive ones still run alone).") var parallel: Int = 1
    @Option(help: "Folder for case outputs (default: a new /tmp/zdtm-XXXXXX).") var runDir: String?

    func run() throws {
        try CryoLog.bootstrap(verbosity: common.verbosity, file: nil)
        let cat = try common.catalogue()
        var names: [String] = test
        var suiteObj: Suite?
        if let s = suite ?? (test.isEmpty && testRegex == nil && external.isEmpty ? "smoke" : nil) {
            suiteObj = try cat.suite(s)
            names += suiteObj!.workloads
        }
        if let rx = testRegex {
            let re = try NSRegularExpression(pattern: rx)
            names += cat.workloads.keys.sorted().filter { re.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil }
        }
        var workloads: [Workload] = []
        for n in names where !workloads.contains(where: { $0.name == n }) {
            guard let w = cat.workloads[n] else { throw ValidationError("unknown workload '\(n)' (see `zdtm list`)") }
            workloads.append(w)
        }
        for path in external {
            var w = Workload(name: (path as NSString).lastPathComponent)
            w.externalPath = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            w.description = "external binary"
            workloads.append(w)
        }
        guard !workloads.isEmpty else { throw ValidationError("no workloads selected") }
        let flavours = try (flavour.isEmpty ? (suiteObj?.flavours ?? ["h"]) : flavour).map { try Flavours.named($0) }
        let modes = try (mode.isEmpty ? (suiteObj?.modes ?? ["nocr"]) : mode).map { try Modes.named($0) }

        var specs: [CaseSpec] = []
        var skipped: [CaseResult] = []
        for w in workloads {
            for f in flavours {
                for m in modes {
                    let spec = CaseSpec(workload: w, flavour: f, mode: m, iterations: iters)
                    if !w.allows(mode: m.name) || !w.allows(flavour: f.name) {
                        skipped.append(CaseResult(spec: spec, outcome: .skip, reason: "not for this flavour/mode", seconds: 0, dir: nil, commands: []))
                    } else { specs.append(spec) }
                }
            }
        }
        let binDir = binDir ?? Locations.selfDir()
        var runDir = runDir ?? ""
        if runDir.isEmpty {
            var tmpl = Array("/tmp/zdtm-XXXXXX".utf8CString)
            guard let p = mkdtemp(&tmpl) else { throw ValidationError("cannot create a run folder in /tmp") }
            runDir = String(cString: p)
        } else {
            try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        }
        var opts = RunOptions(binDir: binDir, cryo: cryo ?? binDir + "/cryo", runDir: runDir)
        opts.keepGoing = keepGoing
        opts.parallel = parallel
        let runner = Runner(options: opts)
        runner.onResult = { r in
            print("\(r.outcome.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0)) \(r.spec.id) (\(String(format: "%.2f", r.seconds))s)\(r.reason.isEmpty ? "" : ": " + r.reason)")
            fflush(nil)
        }
        print("zdtm: \(specs.count) case(s), outputs in \(runDir)")
        let results = runner.run(specs) + skipped
        print(Report.summary(results))
        if let dir = report {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Report.junit(results, suite: suiteObj?.name ?? "zdtm").write(toFile: dir + "/zdtm.xml", atomically: true, encoding: .utf8)
        }
        if !results.contains(where: { $0.dir != nil }) { try? FileManager.default.removeItem(atPath: runDir) }
        if results.contains(where: { $0.outcome == .fail }) { throw ExitCode(1) }
    }
}
