import Foundation

public enum SelectionError: Error, CustomStringConvertible, Equatable {
    case unknownWorkload(String)
    case badRegex(pattern: String, reason: String)
    case regexMatchesNothing(String)
    case nothingSelected
    case badIterations(Int)

    public var description: String {
        switch self {
        case .unknownWorkload(let n): return "unknown workload '\(n)' (see `zdtm list`)"
        case .badRegex(let p, let r): return "-T \(p): not a regular expression: \(r)"
        case .regexMatchesNothing(let p): return "-T \(p) matches no workload"
        case .nothingSelected: return "no workloads selected"
        case .badIterations(let n): return "--iters \(n): must be at least 1"
        }
    }
}

/// What `zdtm run` was asked for, turned into the case matrix.
public struct Selection: Sendable {
    public var tests: [String] = []
    public var regex: String?
    public var suite: String?
    public var externals: [String] = []
    /// Folders of external binaries (CRIU's zdtm/static): every program in them runs.
    public var externalDirs: [String] = []
    public var flavours: [String] = []
    public var modes: [String] = []
    public var iterations = 1
    public init() {}

    /// The cases to run and the ones skipped because the catalogue excludes that flavour or
    /// mode. With no -t, -T or --external the smoke suite runs. Flavours and modes come from
    /// the options, else from the suite, else h and nocr.
    public func cases(in cat: Catalogue) throws -> (run: [CaseSpec], skipped: [CaseResult], suite: Suite?) {
        guard iterations >= 1 else { throw SelectionError.badIterations(iterations) }
        var names = tests
        var suiteObj: Suite?
        if let s = suite ?? (tests.isEmpty && regex == nil && externals.isEmpty && externalDirs.isEmpty ? "smoke" : nil) {
            suiteObj = try cat.suite(s)
            names += suiteObj!.workloads
        }
        if let rx = regex {
            let re: NSRegularExpression
            do { re = try NSRegularExpression(pattern: rx) } catch {
                throw SelectionError.badRegex(pattern: rx, reason: "\(error)")
            }
            let hits = cat.workloads.keys.sorted().filter { re.firstMatch(in: $0, range: NSRange($0.startIndex..., in: $0)) != nil }
            if hits.isEmpty { throw SelectionError.regexMatchesNothing(rx) }
            names += hits
        }
        var workloads: [Workload] = []
        for n in names where !workloads.contains(where: { $0.name == n }) {
            guard let w = cat.workloads[n] else { throw SelectionError.unknownWorkload(n) }
            workloads.append(w)
        }
        for path in externals {
            workloads.append(try ExternalPrograms.workload(path: path, makefile: ExternalPrograms.makefile(in: (path as NSString).deletingLastPathComponent)))
        }
        for dir in externalDirs {
            let make = ExternalPrograms.makefile(in: dir)
            for path in try ExternalPrograms.scan(dir) where !workloads.contains(where: { $0.externalPath == path }) {
                workloads.append(try ExternalPrograms.workload(path: path, makefile: make))
            }
        }
        guard !workloads.isEmpty else { throw SelectionError.nothingSelected }
        let fl = try (flavours.isEmpty ? (suiteObj?.flavours ?? ["h"]) : flavours).map { try Flavours.named($0) }
        let md = try (modes.isEmpty ? (suiteObj?.modes ?? ["nocr"]) : modes).map { try Modes.named($0) }
        var run: [CaseSpec] = [], skipped: [CaseResult] = []
        for w in workloads {
            for f in fl {
                for m in md {
                    var spec = CaseSpec(workload: w, flavour: f, mode: m, iterations: iterations)
                    if let desc = w.desc {
                        let plan = desc.plan(flavour: f.name, mode: m.name, arch: ExternalPrograms.machine, root: getuid() == 0)
                        if let why = plan.skip {
                            skipped.append(CaseResult(spec: spec, outcome: .skip, reason: why, seconds: 0))
                            continue
                        }
                        spec.workload.exclusive = plan.exclusive
                        if let t = plan.timeout { spec.workload.timeout = t }
                        if plan.crfail { spec.workload.xfail[m.name] = ".desc: crfail (CRIU expects its dump to fail)" }
                        if !plan.note.isEmpty { spec.workload.description += " (" + plan.note.joined(separator: "; ") + ")" }
                    }
                    if !w.allows(flavour: f.name) {
                        skipped.append(CaseResult(spec: spec, outcome: .skip, reason: "catalogue: not for flavour \(f.name)", seconds: 0))
                    } else if !w.allows(mode: m.name) {
                        skipped.append(CaseResult(spec: spec, outcome: .skip, reason: "catalogue: not for mode \(m.name)", seconds: 0))
                    } else {
                        run.append(spec)
                    }
                }
            }
        }
        return (run, skipped, suiteObj)
    }
}
