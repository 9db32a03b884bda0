import ArgumentParser
import Engine
import Foundation
import Glibc
import ZDTMCore

/// `zdtm repro CASE`: one case again, by hand. CASE is a kept case folder (its repro.sh is
/// run: the very commands of that run) or an id, "workload × flavour × mode",
/// "workload-flavour-mode" or "workload:flavour:mode" (run afresh with -v4 logs, every
/// command printed, images kept).
struct Repro: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Replay one case: its commands are printed and its images kept.")
    @OptionGroup var common: Common
    @Argument(help: "A kept case folder, or a case id (workload × flavour × mode, workload-flavour-mode, workload:flavour:mode).") var which: String
    @Option(help: "C/R cycles.") var iters: Int = 1
    @Flag(help: "Stop after the dump: the tree is dumped with --leave-running and not restored (zdtm.py's --norst).") var norst = false
    @Option(help: "always, never or failed (default always: a repro is for looking at).") var keepImg: String = "always"
    @Option(help: "Folder with the workload binaries (default: the folder of zdtm).") var binDir: String?
    @Option(help: "The cryo binary (default: cryo next to zdtm).") var cryo: String?

    func run() throws {
        try CryoLog.bootstrap(verbosity: common.verbosity, file: nil)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: which, isDirectory: &isDir), isDir.boolValue {
            let script = which + "/repro.sh"
            guard FileManager.default.fileExists(atPath: script) else { throw ValidationError("\(which) has no repro.sh: not a kept case folder") }
            print("zdtm repro: running \(script):")
            print((try? String(contentsOfFile: script, encoding: .utf8)) ?? "")
            let pid = try Subprocess.spawn("/bin/sh", ["-x", script], cwd: which)
            let st = try Subprocess.wait(pid, timeout: 600) ?? 0
            throw ExitCode(Subprocess.exitCode(st))
        }
        let parts: [String]
        if which.contains("×") { parts = which.split(separator: "×").map { $0.trimmingCharacters(in: .whitespaces) } }
        else if which.contains(":") { parts = which.split(separator: ":").map(String.init) }
        else {
            // workload-flavour-mode: the flavour is the first known one after the workload.
            let f = which.split(separator: "-").map(String.init)
            guard let i = f.indices.dropFirst().first(where: { Flavours.all.map(\.name).contains(f[$0]) }), i + 1 < f.count else {
                throw ValidationError("cannot read \(which) as workload-flavour-mode")
            }
            parts = [f[..<i].joined(separator: "-"), f[i], f[(i + 1)...].joined(separator: "-")]
        }
        guard parts.count == 3 else { throw ValidationError("\(which): give workload × flavour × mode") }
        let cat = try common.catalogue()
        var sel = Selection()
        sel.tests = [parts[0]]; sel.flavours = [parts[1]]; sel.iterations = iters
        sel.modes = [parts[2]]
        var (specs, skipped, _) = try sel.cases(in: cat)
        if let s = skipped.first { print("zdtm repro: \(s.spec.id): \(s.reason)"); throw ExitCode(2) }
        if norst { specs = specs.map { var s = $0; s.mode = NoRestoreMode(); return s } }
        let binDir = binDir ?? Locations.selfDir()
        var opts = RunOptions(binDir: binDir, cryo: cryo ?? binDir + "/cryo", runDir: try Locations.makeRunDir())
        opts.keepImages = RunOptions.KeepImages(rawValue: keepImg) ?? .always
        let runner = try Runner(options: opts)
        let results = runner.run(specs)
        for r in results {
            print("\(r.outcome.rawValue) \(r.spec.id)" + (r.reason.isEmpty ? "" : ": " + r.reason))
            print("commands:")
            for c in r.commands { print("  " + c.shell + "    # log: " + c.log) }
            if let d = r.dir { print("kept: \(d) (images, logs, repro.sh)") }
        }
        if results.contains(where: { $0.outcome == .fail }) { throw ExitCode(1) }
    }
}
