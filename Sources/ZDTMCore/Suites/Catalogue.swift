import Foundation
import Yams

public enum SuiteError: Error, CustomStringConvertible, Equatable {
    case file(path: String, reason: String)
    case key(path: String, key: String, reason: String)
    case unknownSuite(name: String, known: [String])

    public var description: String {
        switch self {
        case .file(let p, let r): return "\(p): \(r)"
        case .key(let p, let k, let r): return "\(p): \(k): \(r)"
        case .unknownSuite(let n, let known): return "no suite '\(n)' (known: \(known.joined(separator: ", ")))"
        }
    }
}

/// One workload as the catalogue (Suites/workloads.yaml) describes it.
public struct Workload: Equatable, Sendable {
    public var name: String
    public var description: String = ""
    /// Flavours it may run in; empty means all.
    public var flavours: [String] = []
    /// Modes it may run in; empty means all except `excludeModes`.
    public var modes: [String] = []
    public var excludeModes: [String] = []
    /// Expected failures: mode -> reason.
    public var xfail: [String: String] = [:]
    /// Runs alone, never in parallel with other cases.
    public var exclusive = false
    public var timeout: Double = 30
    public var args: [String] = []
    /// cryo options for its dumps and restores (zdtm.py's .desc `opts`), e.g. --manage-cgroups=full.
    public var opts: [String] = []
    /// Parts of the visible state not compared for this workload (e.g. "fd-flags").
    public var ignore: Set<StatePart> = []
    /// An external binary, run by path instead of from the build folder.
    public var externalPath: String?
    /// A CRIU zdtm program's NAME.desc, which decides per flavour whether and how it runs.
    public var desc: ZdtmDesc?

    public init(name: String) { self.name = name }

    public func allows(mode: String) -> Bool {
        (modes.isEmpty || modes.contains(mode)) && !excludeModes.contains(mode)
    }
    public func allows(flavour: String) -> Bool { flavours.isEmpty || flavours.contains(flavour) }
}

/// A named selection of workloads, with default flavours and modes.
public struct Suite: Equatable, Sendable {
    public var name: String
    public var description: String = ""
    public var workloads: [String] = []
    public var flavours: [String] = ["h"]
    public var modes: [String] = ["nocr"]
    public init(name: String) { self.name = name }
}

/// The catalogue and the suites, loaded from a Suites/ directory and checked against each other.
public struct Catalogue: Sendable {
    public let directory: String
    public private(set) var workloads: [String: Workload] = [:]
    public private(set) var suites: [String: Suite] = [:]

    static let workloadKeys: Set<String> = ["description", "flavours", "modes", "exclude_modes", "xfail", "exclusive", "timeout", "args", "ignore", "script", "opts"]
    static let suiteKeys: Set<String> = ["name", "description", "workloads", "flavours", "modes"]

    /// Loads DIR/workloads.yaml and every other DIR/*.yaml as a suite.
    public init(directory: String) throws {
        self.directory = directory
        let wfile = directory + "/workloads.yaml"
        workloads = try Catalogue.parseWorkloads(try Catalogue.load(wfile), file: wfile)
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            throw SuiteError.file(path: directory, reason: "cannot list: \(error.localizedDescription)")
        }
        var fileOf: [String: String] = [:]
        for n in names.sorted() where n.hasSuffix(".yaml") && n != "workloads.yaml" {
            let file = directory + "/" + n
            let s = try Catalogue.parseSuite(try Catalogue.load(file), file: file, defaultName: String(n.dropLast(5)))
            try Catalogue.check(suite: s, file: file, against: workloads)
            if let other = fileOf[s.name] {
                throw SuiteError.key(path: file, key: "name", reason: "suite '\(s.name)' is also defined in \(other)")
            }
            fileOf[s.name] = file
            suites[s.name] = s
        }
    }

    /// Builds a catalogue from parsed parts (tests, tools).
    public init(directory: String, workloads: [String: Workload], suites: [String: Suite]) {
        self.directory = directory; self.workloads = workloads; self.suites = suites
    }

    /// A suite's workloads must be in the catalogue, once each.
    public static func check(suite s: Suite, file: String, against workloads: [String: Workload]) throws {
        var seen: Set<String> = []
        for (i, w) in s.workloads.enumerated() {
            guard workloads[w] != nil else {
                throw SuiteError.key(path: file, key: "workloads[\(i)]", reason: "unknown workload '\(w)' (not in workloads.yaml)")
            }
            guard seen.insert(w).inserted else {
                throw SuiteError.key(path: file, key: "workloads[\(i)]", reason: "workload '\(w)' is listed twice")
            }
        }
    }

    public func suite(_ name: String) throws -> Suite {
        guard let s = suites[name] else { throw SuiteError.unknownSuite(name: name, known: suites.keys.sorted()) }
        return s
    }

    /// Parses workloads.yaml text; `file` names it in errors.
    public static func parseWorkloads(yaml: String, file: String) throws -> [String: Workload] {
        try parseWorkloads(try parse(yaml, file: file), file: file)
    }

    /// Parses a suite file's text; `file` names it in errors.
    public static func parseSuite(yaml: String, file: String, defaultName: String) throws -> Suite {
        try parseSuite(try parse(yaml, file: file), file: file, defaultName: defaultName)
    }

    static func load(_ file: String) throws -> Any {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw SuiteError.file(path: file, reason: "cannot read")
        }
        return try parse(text, file: file)
    }

    static func parse(_ text: String, file: String) throws -> Any {
        do {
            guard let v = try Yams.load(yaml: text) else { throw SuiteError.file(path: file, reason: "empty") }
            return v
        } catch let e as SuiteError { throw e } catch {
            throw SuiteError.file(path: file, reason: "not valid YAML: \(error)")
        }
    }

    public static func parseWorkloads(_ doc: Any, file: String) throws -> [String: Workload] {
        guard let top = doc as? [String: Any], let list = top["workloads"] as? [String: Any] else {
            throw SuiteError.file(path: file, reason: "expected a top-level 'workloads' mapping")
        }
        for k in top.keys where k != "workloads" { throw SuiteError.key(path: file, key: k, reason: "unknown key") }
        var out: [String: Workload] = [:]
        for (name, raw) in list {
            let ctx = "workloads.\(name)"
            guard name.range(of: "^[a-z0-9_-]+$", options: .regularExpression) != nil else {
                throw SuiteError.key(path: file, key: ctx, reason: "workload names are lowercase letters, digits, '-' and '_'")
            }
            var w = Workload(name: name)
            let fields: [String: Any]
            if raw is NSNull || raw as? String == "" { fields = [:] } else {
                guard let f = raw as? [String: Any] else { throw SuiteError.key(path: file, key: ctx, reason: "expected a mapping") }
                fields = f
            }
            for (k, v) in fields {
                let key = "\(ctx).\(k)"
                guard workloadKeys.contains(k) else { throw SuiteError.key(path: file, key: key, reason: "unknown key") }
                switch k {
                case "description": w.description = try string(v, file, key)
                case "script":
                    // A workload that is not built by SwiftPM (python, shell): its path from the repository root.
                    let root = ((file as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
                    w.externalPath = ((root + "/" + (try string(v, file, key))) as NSString).standardizingPath
                case "flavours": w.flavours = try flavourNames(v, file, key)
                case "modes": w.modes = try modeNames(v, file, key)
                case "exclude_modes": w.excludeModes = try modeNames(v, file, key)
                case "args": w.args = try strings(v, file, key)
                case "opts": w.opts = try strings(v, file, key)
                case "ignore":
                    for (i, part) in try strings(v, file, key).enumerated() {
                        guard let p = StatePart(rawValue: part) else {
                            throw SuiteError.key(path: file, key: "\(key)[\(i)]",
                                                 reason: "unknown state part '\(part)' (known: \(StatePart.allCases.map(\.rawValue).joined(separator: ", ")))")
                        }
                        w.ignore.insert(p)
                    }
                case "exclusive":
                    guard let b = v as? Bool else { throw SuiteError.key(path: file, key: key, reason: "expected true or false") }
                    w.exclusive = b
                case "timeout":
                    guard let t = (v as? Int).map(Double.init) ?? (v as? Double), t > 0 else {
                        throw SuiteError.key(path: file, key: key, reason: "expected a positive number of seconds")
                    }
                    w.timeout = t
                case "xfail":
                    guard let m = v as? [String: Any] else { throw SuiteError.key(path: file, key: key, reason: "expected mode: reason") }
                    for (mode, reason) in m {
                        _ = try modeNames(mode, file, key)
                        w.xfail[mode] = try string(reason, file, "\(key).\(mode)")
                    }
                default: break
                }
            }
            out[name] = w
        }
        return out
    }

    public static func parseSuite(_ doc: Any, file: String, defaultName: String) throws -> Suite {
        guard let top = doc as? [String: Any] else { throw SuiteError.file(path: file, reason: "expected a mapping") }
        var s = Suite(name: defaultName)
        for (k, v) in top {
            guard suiteKeys.contains(k) else { throw SuiteError.key(path: file, key: k, reason: "unknown key") }
            switch k {
            case "name": s.name = try string(v, file, k)
            case "description": s.description = try string(v, file, k)
            case "workloads": s.workloads = try strings(v, file, k)
            case "flavours": s.flavours = try flavourNames(v, file, k)
            case "modes": s.modes = try modeNames(v, file, k)
            default: break
            }
        }
        guard !s.workloads.isEmpty else { throw SuiteError.key(path: file, key: "workloads", reason: "a suite needs at least one workload") }
        return s
    }

    /// Names from the design are accepted even before they run, so suites can list them early;
    /// `zdtm run` then says which are not implemented.
    static func modeNames(_ v: Any, _ file: String, _ key: String) throws -> [String] {
        try names(v, file, key, known: Modes.known, what: "mode")
    }
    static func flavourNames(_ v: Any, _ file: String, _ key: String) throws -> [String] {
        try names(v, file, key, known: Flavours.known, what: "flavour")
    }
    static func names(_ v: Any, _ file: String, _ key: String, known: Set<String>, what: String) throws -> [String] {
        let list = try strings(v, file, key)
        for (i, n) in list.enumerated() where !known.contains(n) {
            throw SuiteError.key(path: file, key: list.count == 1 && v is String ? key : "\(key)[\(i)]",
                                 reason: "unknown \(what) '\(n)' (known: \(known.sorted().joined(separator: ", ")))")
        }
        return list
    }

    static func string(_ v: Any, _ file: String, _ key: String) throws -> String {
        if let s = v as? String { return s }
        if let i = v as? Int { return String(i) }
        throw SuiteError.key(path: file, key: key, reason: "expected a string")
    }

    static func strings(_ v: Any, _ file: String, _ key: String) throws -> [String] {
        if let s = v as? String { return [s] }
        guard let a = v as? [Any] else { throw SuiteError.key(path: file, key: key, reason: "expected a list") }
        return try a.enumerated().map { try string($0.element, file, "\(key)[\($0.offset)]") }
    }
}
