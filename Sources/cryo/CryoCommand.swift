import ArgumentParser
import Engine
import Foundation

/// Options every subcommand shares, named as CRIU names them.
struct LogOptions: ParsableArguments {
    @Option(name: .customShort("v", allowingJoined: true), help: "Verbosity 0..4 (-v4 is most verbose).")
    var verbosity: Int = 2

    @Option(name: [.customShort("o"), .customLong("log-file")], help: "Write the log to FILE instead of stderr.")
    var logFile: String?

    func bootstrap() throws {
        try CryoLog.bootstrap(verbosity: verbosity, file: logFile)
    }
}

@main
struct Cryo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cryo",
        abstract: "Checkpoint/restore in userspace for Linux process trees.",
        subcommands: [Check.self, Dump.self, Restore.self]
    )
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Report whether the kernel offers what cryo needs (one line per feature).")

    @OptionGroup var log: LogOptions

    func run() throws {
        try log.bootstrap()
        let results = KernelCheck.run()
        let width = results.map(\.name.count).max() ?? 20
        var missing: [FeatureResult] = []
        for r in results {
            let state = r.available ? "yes" : (r.required ? "NO (required)" : "no")
            print("\(r.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(state.padding(toLength: 14, withPad: " ", startingAt: 0))  \(r.detail)")
            if r.required && !r.available { missing.append(r) }
        }
        if missing.isEmpty {
            print("Looks good.")
        } else {
            print("Missing for dump/restore: " + missing.map { "\($0.name) (\($0.detail))" }.joined(separator: "; "))
            throw ExitCode(1)
        }
    }
}

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Checkpoint a process tree into an images directory.",
        discussion: "Without --leave-running or --leave-stopped the tree is killed after a successful dump. A failed dump resumes the tree untouched.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("t"), .customLong("tree")], help: "Root pid of the tree to dump.") var tree: Int32
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "Where to write the images.") var imagesDir: String
    @Flag(name: [.customShort("R"), .customLong("leave-running")], help: "Let the tree run on after the dump.") var leaveRunning = false
    @Flag(name: [.customShort("s"), .customLong("leave-stopped")], help: "Leave the tree stopped (SIGSTOP) after the dump.") var leaveStopped = false

    func validate() throws {
        if leaveRunning && leaveStopped { throw ValidationError("--leave-running and --leave-stopped exclude each other") }
    }

    func run() throws {
        try log.bootstrap()
        var req = DumpRequest(pid: tree, imagesDir: imagesDir)
        req.leave = leaveRunning ? .running : leaveStopped ? .stopped : .killed
        do {
            try Dumper(req).run()
        } catch {
            FileHandle.standardError.write(Data("cryo dump: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a process tree from an images directory.",
        discussion: "Without -d cryo waits for the restored tree and exits with its status.")

    @OptionGroup var log: LogOptions
    @Option(name: [.customShort("D"), .customLong("images-dir")], help: "The images to restore from.") var imagesDir: String
    @Flag(name: [.customShort("d"), .customLong("restore-detached")], help: "Exit once the tree runs.") var detached = false
    @Option(name: .customLong("pidfile"), help: "Write the root pid here.") var pidfile: String?

    func run() throws {
        try log.bootstrap()
        var req = RestoreRequest(imagesDir: imagesDir)
        req.detach = detached
        req.pidfile = pidfile
        let result: (pid: Int32, exitStatus: Int32?)
        do {
            result = try Restorer(req).run()
        } catch {
            FileHandle.standardError.write(Data("cryo restore: \(error)\n".utf8))
            throw ExitCode(1)
        }
        if let st = result.exitStatus {
            throw ExitCode((st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f))
        }
    }
}
