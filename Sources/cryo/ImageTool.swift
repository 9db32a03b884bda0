import ArgumentParser
import Engine
import Foundation

/// `cryo image`: CRIU's crit, on the same images (decode, encode, show, info, x) plus diff.
struct ImageTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Look inside checkpoints: decode, encode, show, info, explore (x), diff, make-lazy.",
        subcommands: [ImageDecode.self, ImageEncode.self, ImageShow.self, ImageInfo.self, ImageExplore.self, ImageDiff.self, MakeLazyCommand.self])

    /// Errors go to stderr with exit status 1, never a crash.
    static func guarded(_ what: String, _ body: () throws -> Void) throws {
        do { try body() } catch {
            FileHandle.standardError.write(Data("cryo image \(what): \(error)\n".utf8))
            throw ExitCode(1)
        }
    }

    static func write(_ text: String, to out: String?) throws {
        if let out {
            do { try (text + "\n").write(toFile: out, atomically: true, encoding: .utf8) } catch {
                throw ImageError.io(file: out, errno: errno, what: "write")
            }
        } else {
            print(text)
        }
    }

    static func json<T: Encodable>(_ v: T) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try enc.encode(v), as: UTF8.self)
    }
}

struct ImageDecode: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "decode", abstract: "An image as JSON (crit's shape).")
    @Option(name: .shortAndLong, help: "The image file.") var input: String
    @Option(name: .shortAndLong, help: "Write the JSON here instead of stdout.") var output: String?
    @Flag(help: "Indent the JSON.") var pretty = false
    @Flag(help: "Pages images: their bytes as base64 instead of a summary (needed to encode them back).") var pages = false
    func run() throws {
        try ImageTool.guarded("decode") { try ImageTool.write(try ImageJSON.decode(file: input, pages: pages, pretty: pretty), to: output) }
    }
}

struct ImageEncode: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "encode", abstract: "JSON from `decode` back into the image.")
    @Option(name: .shortAndLong, help: "The JSON file.") var input: String
    @Option(name: .shortAndLong, help: "The image file to write.") var output: String
    func run() throws {
        try ImageTool.guarded("encode") {
            let text: String
            do { text = try String(contentsOfFile: input, encoding: .utf8) } catch { throw ImageError.io(file: input, errno: errno, what: "read") }
            let bytes = try ImageJSON.encode(json: text, file: input)
            guard FileManager.default.createFile(atPath: output, contents: Data(bytes)) else {
                throw ImageError.io(file: output, errno: errno, what: "write")
            }
        }
    }
}

struct ImageShow: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "An image, pretty-printed.")
    @Argument(help: "The image file.") var file: String
    func run() throws {
        try ImageTool.guarded("show") { print(try ImageJSON.decode(file: file, pretty: true)) }
    }
}

struct ImageInfo: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "An image's magic and number of entries.")
    @Argument(help: "The image file.") var file: String
    @Flag(help: "JSON output.") var json = false
    func run() throws {
        try ImageTool.guarded("info") {
            let i = try ImageJSON.info(file: file)
            if json {
                print(try ImageJSON.render(["file": file, "magic": i.magic, "entries": i.entries, "bytes": i.bytes], pretty: true))
            } else {
                print("\(file): magic \(i.magic), \(i.entries) \(i.magic == "PAGES" ? "page(s)" : "entr\(i.entries == 1 ? "y" : "ies")"), \(i.bytes) bytes")
            }
        }
    }
}

struct ImageExplore: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "x", abstract: "Explore a checkpoint: ps, fds, mems, rss, chain.")
    enum What: String, ExpressibleByArgument, CaseIterable { case ps, fds, mems, rss, chain }
    @Argument(help: "The images folder.") var dir: String
    @Argument(help: "ps | fds | mems | rss | chain") var what: What
    @Flag(help: "Stable JSON instead of a table.") var json = false

    func run() throws {
        try ImageTool.guarded("x") {
            let x = try ImageExplorer(path: dir)
            switch what {
            case .ps:
                let ps = try x.ps()
                if json { return print(try ImageTool.json(ps)) }
                print(pad("PID", 7) + pad("PPID", 7) + pad("PGID", 7) + pad("SID", 7) + pad("THREADS", 8) + "  STATE    COMM")
                for t in ps {
                    print(pad("\(t.pid)", 7) + pad("\(t.ppid)", 7) + pad("\(t.pgid)", 7) + pad("\(t.sid)", 7) + pad("\(t.threads.count)", 8)
                          + "  " + t.state.padding(toLength: 8, withPad: " ", startingAt: 0) + " " + t.comm)
                }
            case .fds:
                let fds = try x.fds()
                if json { return print(try ImageTool.json(fds)) }
                for t in fds {
                    print(t.pid)
                    for f in t.fds { print("\t" + pad(f.fd, 7) + ": " + f.target) }
                }
            case .mems, .rss:
                let mems = try x.mems()
                if json { return print(try ImageTool.json(mems)) }
                for t in mems {
                    print(t.pid)
                    print("\t" + "RANGE".padding(toLength: 34, withPad: " ", startingAt: 0) + "PROT " + (what == .rss ? pad("RSS", 8) : pad("HERE", 8) + pad("PARENT", 8) + pad("LAZY", 8) + pad("COW", 8)) + "  WHAT")
                    for m in t.mappings {
                        let counts = what == .rss ? pad("\(m.rss)", 8) : pad("\(m.pagesHere)", 8) + pad("\(m.pagesInParent)", 8) + pad("\(m.pagesLazy)", 8) + pad("\(m.pagesCow)", 8)
                        print("\t" + "\(m.start)-\(m.end)".padding(toLength: 34, withPad: " ", startingAt: 0) + m.prot + "  " + counts + "  " + m.what)
                    }
                }
            case .chain:
                let chain = try x.chain()
                if json { return print(try ImageTool.json(chain)) }
                for (i, l) in chain.enumerated() {
                    print("\(i == 0 ? "" : String(repeating: "  ", count: i - 1) + "└ ")\(l.path): \(l.tasks) task(s), pages \(l.pagesBytes) bytes, other images \(l.otherBytes) bytes")
                }
            }
        }
    }

    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : String(repeating: " ", count: n - s.count) + s }
}

struct ImageDiff: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "diff", abstract: "What changed between two checkpoints of the same tree.")
    @Argument(help: "The older images folder.") var first: String
    @Argument(help: "The newer images folder.") var second: String
    @Flag(help: "JSON output.") var json = false
    func run() throws {
        try ImageTool.guarded("diff") {
            let d = try ImageExplorer.diff(try ImageExplorer(path: first), try ImageExplorer(path: second))
            if json { print(try ImageTool.json(d)) } else if d.isEmpty { print("no difference") } else { d.forEach { print($0) } }
        }
    }
}
