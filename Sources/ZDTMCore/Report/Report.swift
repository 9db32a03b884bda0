import Foundation

public enum Report {
    /// The console table, then totals, ending with the line CI reads: "N passed, N failed[, N skipped]".
    public static func summary(_ results: [CaseResult]) -> String {
        var lines: [String] = []
        let w = max(30, results.map { $0.spec.id.count }.max() ?? 0)
        lines.append("")
        lines.append("case".padding(toLength: w, withPad: " ", startingAt: 0) + "  result  time")
        lines.append(String(repeating: "-", count: w + 22))
        for r in results {
            let t = String(format: "%6.2fs", r.seconds)
            var line = r.spec.id.padding(toLength: w, withPad: " ", startingAt: 0) + "  " + r.outcome.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0) + "  " + t
            if !r.reason.isEmpty { line += "  " + r.reason }
            if let d = r.dir { line += "  [\(d)]" }
            lines.append(line)
        }
        let passed = results.filter { $0.outcome == .pass || $0.outcome == .xfail }.count
        let failed = results.filter { $0.outcome == .fail }.count
        let skipped = results.filter { $0.outcome == .skip }.count
        lines.append(String(repeating: "-", count: w + 22))
        lines.append("\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : ""))
        return lines.joined(separator: "\n")
    }

    public static func junit(_ results: [CaseResult], suite: String) -> String {
        let failures = results.filter { $0.outcome == .fail }.count
        let skipped = results.filter { $0.outcome == .skip }.count
        let total = results.reduce(0) { $0 + $1.seconds }
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuite name=\"\(esc(suite))\" tests=\"\(results.count)\" failures=\"\(failures)\" skipped=\"\(skipped)\" time=\"\(String(format: "%.3f", total))\">\n"
        for r in results {
            x += "  <testcase classname=\"\(esc(r.spec.workload.name))\" name=\"\(esc(r.spec.flavour.name + "-" + r.spec.mode.name))\" time=\"\(String(format: "%.3f", r.seconds))\""
            switch r.outcome {
            case .pass: x += "/>\n"
            case .xfail: x += ">\n    <system-out>\(esc("expected failure: " + r.reason))</system-out>\n  </testcase>\n"
            case .skip: x += ">\n    <skipped message=\"\(esc(r.reason))\"/>\n  </testcase>\n"
            case .fail:
                x += ">\n    <failure message=\"\(esc(r.reason))\">\(esc((r.commands + (r.dir.map { ["kept: " + $0] } ?? [])).joined(separator: "\n")))</failure>\n  </testcase>\n"
            }
        }
        x += "</testsuite>\n"
        return x
    }

    public static func esc(_ s: String) -> String {
        var o = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&apos;"
            default:
                // XML 1.0 forbids most control characters even escaped.
                if u.value < 0x20 && u != "\n" && u != "\t" && u != "\r" { o += "?" } else { o.unicodeScalars.append(u) }
            }
        }
        return o
    }
}
