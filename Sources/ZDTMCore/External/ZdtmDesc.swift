import Foundation

/// A CRIU zdtm program's NAME.desc: a Python dict literal of strings (and lists of strings),
/// e.g. {'flavor': 'h ns', 'flags': 'suid excl', 'opts': '--tcp-established'}.
public struct ZdtmDesc: Equatable, Sendable {
    public var values: [String: [String]] = [:]

    public init() {}

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var description: String
    }

    /// Space-separated words of a string value, or the items of a list.
    public func words(_ key: String) -> [String] {
        (values[key] ?? []).flatMap { $0.split(separator: " ").map(String.init) }
    }
    public var flavours: [String] { words("flavor") }
    public var flags: [String] { words("flags") }
    /// CRIU options for both dump and restore (opts), dump only (dopts), restore only (ropts).
    public var opts: [String] { words("opts") + words("dopts") + words("ropts") }
    /// Seconds the program may take (zdtm.py's default is 30).
    public var timeout: Double? { values["timeout"]?.first.flatMap { Double($0) } }
    public var features: [String] { words("feature") }
    public var arch: [String] { words("arch") }

    public static func parse(_ text: String, path: String) throws -> ZdtmDesc {
        let chars = Array(text.unicodeScalars)
        var i = 0
        func fail(_ why: String) -> ParseError { ParseError(description: "\(path): offset \(i): \(why)") }
        func skip() {
            while i < chars.count {
                if chars[i] == "#" { while i < chars.count && chars[i] != "\n" { i += 1 } } else if CharacterSet.whitespacesAndNewlines.contains(chars[i]) { i += 1 } else { break }
            }
        }
        func expect(_ c: Unicode.Scalar) throws {
            skip()
            guard i < chars.count, chars[i] == c else { throw fail("expected '\(c)'") }
            i += 1
        }
        func string() throws -> String {
            skip()
            guard i < chars.count, chars[i] == "'" || chars[i] == "\"" else { throw fail("expected a quoted string") }
            let q = chars[i]
            i += 1
            var s = String.UnicodeScalarView()
            while i < chars.count && chars[i] != q {
                if chars[i] == "\\" && i + 1 < chars.count { i += 1 }
                s.append(chars[i]); i += 1
            }
            guard i < chars.count else { throw fail("unterminated string") }
            i += 1
            return String(s)
        }
        func value() throws -> [String] {
            skip()
            guard i < chars.count else { throw fail("expected a value") }
            if chars[i] == "[" || chars[i] == "(" {
                let close: Unicode.Scalar = chars[i] == "[" ? "]" : ")"
                i += 1
                var items: [String] = []
                while true {
                    skip()
                    if i < chars.count && chars[i] == close { i += 1; return items }
                    items.append(try string())
                    skip()
                    if i < chars.count && chars[i] == "," { i += 1 }
                }
            }
            if chars[i] == "'" || chars[i] == "\"" { return [try string()] }
            // A bare word (True, a number): kept as written.
            var s = ""
            while i < chars.count && !",}".unicodeScalars.contains(chars[i]) && !CharacterSet.whitespacesAndNewlines.contains(chars[i]) { s.unicodeScalars.append(chars[i]); i += 1 }
            guard !s.isEmpty else { throw fail("expected a value") }
            return [s]
        }
        var d = ZdtmDesc()
        try expect("{")
        while true {
            skip()
            if i < chars.count && chars[i] == "}" { i += 1; break }
            let k = try string()
            try expect(":")
            d.values[k] = try value()
            skip()
            if i < chars.count && chars[i] == "," { i += 1 }
        }
        skip()
        guard i == chars.count else { throw fail("text after the closing brace") }
        return d
    }

    /// CRIU's dump/restore options that cryo does by default (or that change nothing here).
    public static let defaultOpts: Set<String> = ["--tcp-established"]
    /// CRIU's options cryo takes with the same meaning: given to its dump and restore.
    public static let passedOpts: Set<String> = ["--file-locks", "--manage-cgroups", "--ext-unix-sk"]
    /// CRIU options zdtm.py itself adds for the flavour; harmless here.
    public static let ignoredFlags: Set<String> = ["reqrst", "nouser", "samens"]
    /// Flags that keep a program out of modes, as zdtm.py reads them.
    public static let modeFlags: [String: Set<String>] = ["nolazy": ["lazy", "remote-lazy"], "noremotelazy": ["remote-lazy"], "nopage": ["page-server"]]

    /// How zdtm runs the program in the host flavour on x86_64: skipped (with the reason), or
    /// run, with `exclusive` and an expected failure for crfail.
    public struct Plan: Equatable, Sendable {
        public var skip: String?
        public var exclusive = false
        public var crfail = false
        public var note: [String] = []
        public var timeout: Double?
    }

    public func plan(flavour: String, mode: String? = nil, arch machine: String, root: Bool) -> Plan {
        var p = Plan()
        if !flavours.isEmpty && !flavours.contains(flavour) {
            p.skip = ".desc: flavor '\(flavours.joined(separator: " "))' only, never run in flavour \(flavour)"
            return p
        }
        if !arch.isEmpty && !arch.contains(machine) { p.skip = ".desc: arch \(arch.joined(separator: " ")), not \(machine)"; return p }
        let f = flags
        if f.contains("noauto") { p.skip = ".desc: noauto (CRIU runs it only when named with its own setup)"; return p }
        if f.contains("suid") && !root { p.skip = ".desc: suid, needs root"; return p }
        if let mode, let flag = ZdtmDesc.modeFlags.keys.sorted().first(where: { f.contains($0) && ZdtmDesc.modeFlags[$0]!.contains(mode) }) {
            p.skip = ".desc: \(flag), never run in mode \(mode)"
            return p
        }
        p.exclusive = f.contains("excl")
        p.crfail = f.contains("crfail")
        p.timeout = timeout
        let unknownOpts = opts.filter { $0.hasPrefix("-") && !ZdtmDesc.defaultOpts.contains($0) && !ZdtmDesc.passedOpts.contains($0) }
        if !unknownOpts.isEmpty { p.skip = ".desc: needs CRIU option(s) \(unknownOpts.joined(separator: " ")), which cryo does not take"; return p }
        if !features.isEmpty { p.note.append("feature \(features.joined(separator: " ")) not checked") }
        return p
    }
}
