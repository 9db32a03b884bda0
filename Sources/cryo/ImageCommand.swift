import ArgumentParser
import Engine
import Foundation

struct MakeLazyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-lazy",
        abstract: "Copy a checkpoint without the pages a lazy restore serves (private anonymous memory).",
        discussion: "Restore the copy with `cryo restore --lazy-pages -D OUT` while `cryo lazy-pages -D IN -W OUT` (or a page server on IN) serves the pages left out.")

    @OptionGroup var log: LogOptions
    @Argument(help: "The checkpoint to copy.") var input: String
    @Argument(help: "Where the copy goes (a new or empty directory).") var output: String

    func run() throws {
        try log.bootstrap()
        do {
            let r = try MakeLazy(input: input, output: output).run()
            print("make-lazy: \(input) \(r.inBytes) bytes -> \(output) \(r.outBytes) bytes (\(r.lazyPages) pages left to lazy restore, \(r.keptPages) kept)")
        } catch {
            FileHandle.standardError.write(Data("cryo image make-lazy: \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
}
