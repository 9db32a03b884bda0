import Foundation

public enum Report {
    /// The console table, totals, and last the line CI reads: "N passed, N failed[, N skipped]".
    /// XFAIL counts as passed (it is the expected result).
    public static func summary(_ results: [CaseResult], wallSeconds: Double? = nil) -> String {
        var lines: [String] = []
        let w = max(30, results.map { $0.spec.id.count }.max() ?? 0)
        let rule = String(repeating: "-", count: w + 18)
        lines.append("")
        lines.append(pad("case", w) + "  result    time")
        lines.append(rule)
        for r in results {
            var line = pad(r.spec.id, w) + "  " + pad(r.outcome.rawValue, 6) + String(format: " %7.2fs", r.seconds)
            if !r.reason.isEmpty { line += "  " + r.reason }
            if let d = r.dir { line += "  [kept \(d)]" }
            lines.append(line)
        }
        lines.append(rule)
        let count = { (o: Outcome) in results.filter { $0.outcome == o }.count }
        let caseTime = results.reduce(0) { $0 + $1.seconds }
        lines.append("total: \(results.count) case(s): \(count(.pass)) PASS, \(count(.xfail)) XFAIL, \(count(.fail)) FAIL, \(count(.skip)) SKIP; "
                     + String(format: "%.2fs in cases", caseTime) + (wallSeconds.map { String(format: ", %.2fs wall", $0) } ?? ""))
        lines.append(finalLine(results))
        return lines.joined(separator: "\n")
    }

    public static func finalLine(_ results: [CaseResult]) -> String {
        let passed = results.filter { $0.outcome == .pass || $0.outcome == .xfail }.count
        let failed = results.filter { $0.outcome == .fail }.count
        let skipped = results.filter { $0.outcome == .skip }.count
        return "\(passed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : "")
    }

    /// JUnit XML: one testsuite, a testcase per case (classname = workload, name = flavour-mode).
    public static func junit(_ results: [CaseResult], suite: String) -> String {
        let failures = results.filter { $0.outcome == .fail }.count
        let skipped = results.filter { $0.outcome == .skip }.count
        let total = results.reduce(0) { $0 + $1.seconds }
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuite name=\"\(esc(suite))\" tests=\"\(results.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"\(skipped)\" time=\"\(String(format: "%.3f", total))\">\n"
        for r in results {
            x += "  <testcase classname=\"\(esc(r.spec.workload.name))\" name=\"\(esc(r.spec.flavour.name + "-" + r.spec.mode.name))\" time=\"\(String(format: "%.3f", r.seconds))\""
            switch r.outcome {
            case .pass where r.reason.isEmpty: x += "/>\n"
            case .pass, .xfail: x += ">\n    <system-out>\(esc(r.outcome == .xfail ? "expected failure: " + r.reason : r.reason))</system-out>\n  </testcase>\n"
            case .skip: x += ">\n    <skipped message=\"\(esc(r.reason))\"/>\n  </testcase>\n"
            case .fail:
                let body = r.commands.map(\.shell) + (r.dir.map { ["kept: " + $0] } ?? [])
                x += ">\n    <failure message=\"\(esc(r.reason))\">\(esc(body.joined(separator: "\n")))</failure>\n  </testcase>\n"
            }
        }
        x += "</testsuite>\n"
        return x
    }

    /// XML text/attribute escaping. XML 1.0 forbids most control characters even escaped,
    /// so they become '?'.
    public static func esc(_ s: String) -> String {
        var o = ""
        for u in s.unicodeScalars {
            switch u {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&apos;"
            case "\n": o += "&#10;"
            case "\t", "\r": o += "&#\(u.value);"
            default:
                if u.value < 0x20 || u.value == 0xFFFE || u.value == 0xFFFF { o += "?" } else { o.unicodeScalars.append(u) }
            }
        }
        return o
    }

    static func pad(_ s: String, _ n: Int) -> String {
        s.count >= n ? s : s + String(repeating: " ", count: n - s.count)
    }
}
