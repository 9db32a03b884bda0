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
        subcommands: [Check.self]
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
