import Foundation

/// The arguments CRIU's zdtm Makefile gives each program (its `%.pid` rules), which zdtm.py
/// starts through `make NAME.pid`: TST_FILE programs get --filename=NAME.test, TST_DIR ones
/// --dirname=NAME.test, TST_DIR_FILE both, and a few have their own rule.
public struct CriuMakefile: Equatable, Sendable {
    public var files: Set<String> = []
    public var dirs: Set<String> = []
    public var dirFiles: Set<String> = []
    /// NAME -> the arguments of its own `NAME.pid: NAME` rule, after --outfile.
    public var own: [String: [String]] = [:]

    public init() {}

    public static func parse(_ text: String) -> CriuMakefile {
        var m = CriuMakefile()
        // Join continuation lines first.
        let lines = text.replacingOccurrences(of: "\\\n", with: " ").split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var lists: [String: Set<String>] = [:]
        for (n, raw) in lines.enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            for name in ["TST_FILE", "TST_DIR", "TST_DIR_FILE"] {
                for op in ["+=", ":=", "="] where line.hasPrefix(name + " ") || line.hasPrefix(name + "\t") || line.hasPrefix(name + op) {
                    let rest = line.dropFirst(name.count).trimmingCharacters(in: .whitespaces)
                    guard rest.hasPrefix(op) else { continue }
                    let words = rest.dropFirst(op.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                    lists[name, default: []].formUnion(words.filter { !$0.hasPrefix("$") })
                    break
                }
            }
            // NAME.pid: NAME, then a recipe "$(<D)/$(<F) --pidfile=$@ --outfile=$<.out ARGS".
            if let colon = line.firstIndex(of: ":"), line[..<colon].hasSuffix(".pid"), !line.hasPrefix("$"), !line.hasPrefix("%"),
               n + 1 < lines.count, lines[n + 1].hasPrefix("\t") {
                let name = String(line[..<colon].dropLast(4))
                let recipe = lines[n + 1].split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
                guard let at = recipe.firstIndex(where: { $0.hasPrefix("--outfile=") }) else { continue }
                m.own[name] = recipe[(at + 1)...].map { $0.replacingOccurrences(of: "$<", with: name) }
            }
        }
        m.files = lists["TST_FILE"] ?? []
        m.dirs = lists["TST_DIR"] ?? []
        m.dirFiles = lists["TST_DIR_FILE"] ?? []
        return m
    }

    public func args(for name: String) -> [String] {
        if let a = own[name] { return a }
        if dirFiles.contains(name) { return ["--dirname=\(name).dir.test", "--filename=\(name).test"] }
        if files.contains(name) { return ["--filename=\(name).test"] }
        if dirs.contains(name) { return ["--dirname=\(name).test"] }
        return []
    }
}
