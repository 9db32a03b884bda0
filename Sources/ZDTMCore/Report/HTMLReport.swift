import Foundation

extension Report {
    /// One self-contained page: totals, a chart of case times per mode, and every case with
    /// its result, the time of each cryo command, its dump and restore phases, and for a
    /// failure its reason and the tail of the failing command's log inline.
    public static func html(_ results: [CaseResult], suite: String, wallSeconds: Double? = nil) -> String {
        func h(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
        }
        let count = { (o: Outcome) in results.filter { $0.outcome == o }.count }
        var p = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>zdtm: \(h(suite))</title><style>"
        p += "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;font-size:13px}"
        p += ".PASS{background:#dfd}.FAIL{background:#fdd}.XFAIL{background:#ffd}.SKIP{background:#eee}pre{margin:0;white-space:pre-wrap;font-size:12px;max-width:70em}"
        p += "</style></head><body>\n<h1>zdtm: \(h(suite))</h1>\n"
        p += "<p>\(results.count) case(s): \(count(.pass)) PASS, \(count(.xfail)) XFAIL, \(count(.fail)) FAIL, \(count(.skip)) SKIP"
        p += wallSeconds.map { String(format: "; %.1f s wall", $0) } ?? ""
        p += ". Final line: <b>\(h(finalLine(results)))</b></p>\n"

        // Times per mode: mean case time, and the mean of its cryo commands' time, as bars.
        let ran = results.filter { $0.outcome != .skip }
        let modes = Array(Set(ran.map { $0.spec.mode.name })).sorted()
        if !modes.isEmpty {
            let stats = modes.map { m -> (String, Double, Double) in
                let rs = ran.filter { $0.spec.mode.name == m }
                let mean = rs.reduce(0) { $0 + $1.seconds } / Double(rs.count)
                let cryo = rs.reduce(0) { $0 + $1.commands.reduce(0) { $0 + $1.seconds } } / Double(rs.count)
                return (m, mean, cryo)
            }
            let top = max(0.001, stats.map(\.1).max() ?? 1)
            let rowH = 22, width = 520
            p += "<h2>Mean time per case, by mode</h2>\n<svg width=\"\(width + 260)\" height=\"\(stats.count * rowH + 10)\" xmlns=\"http://www.w3.org/2000/svg\">\n"
            for (i, s) in stats.enumerated() {
                let y = i * rowH + 4
                let w1 = Int(Double(width) * s.1 / top), w2 = Int(Double(width) * s.2 / top)
                p += "<text x=\"0\" y=\"\(y + 14)\" font-size=\"13\">\(h(s.0))</text>"
                p += "<rect x=\"110\" y=\"\(y)\" width=\"\(max(1, w1))\" height=\"16\" fill=\"#9bc\"/>"
                p += "<rect x=\"110\" y=\"\(y + 4)\" width=\"\(max(1, w2))\" height=\"8\" fill=\"#357\"/>"
                p += "<text x=\"\(116 + w1)\" y=\"\(y + 13)\" font-size=\"12\">" + String(format: "%.2f s (cryo %.2f s)", s.1, s.2) + "</text>\n"
            }
            p += "</svg>\n<p style=\"font-size:12px\">Light: the whole case (start, C/R, checks); dark: the cryo commands in it.</p>\n"
        }

        p += "<h2>Cases</h2>\n<table><tr><th>case</th><th>result</th><th>time</th><th>cryo commands</th><th>phases (ms, summed over tasks)</th><th>reason</th></tr>\n"
        for r in results {
            let cmds = r.commands.filter { $0.seconds > 0 }.map { c -> String in
                let verb = c.argv.first { ["dump", "pre-dump", "restore", "page-server", "lazy-pages"].contains($0) } ?? (c.argv.dropFirst().first ?? "?")
                return String(format: "%@ %.2f s", h(verb), c.seconds)
            }.joined(separator: "<br>")
            let phases = r.phases.sorted { $0.key < $1.key }.map { String(format: "%@ %.1f", h($0.key), $0.value) }.joined(separator: "<br>")
            var reason = h(r.reason)
            if r.outcome == .fail, let failing = r.commands.last, let tail = try? String(contentsOfFile: failing.log, encoding: .utf8) {
                reason += "<pre>" + h(tail.split(separator: "\n").suffix(15).joined(separator: "\n")) + "</pre>"
            }
            if let d = r.dir { reason += "<br>kept: " + h(d) }
            p += "<tr class=\"\(r.outcome.rawValue)\"><td>\(h(r.spec.id))</td><td>\(r.outcome.rawValue)</td><td>" + String(format: "%.2f s", r.seconds)
            p += "</td><td>\(cmds)</td><td>\(phases)</td><td>\(reason)</td></tr>\n"
        }
        p += "</table>\n</body></html>\n"
        return p
    }
}
