/// A workload's verdict in its outfile. CRIU's rule (zdtm.py): PASS when the word PASS is
/// among the outfile's words, as its test library writes it ("TIME: PID: PASS", after other
/// lines). Ours write "PASS" alone, which the same rule takes.
public enum Outfile {
    public static func passed(_ text: String) -> Bool {
        text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }).contains("PASS")
    }

    /// The line that says why: the first one with a FAIL word (CRIU's "TIME: PID: FAIL: ..."),
    /// else the last non-empty one.
    public static func reason(_ text: String) -> String {
        let lines = text.split(separator: "\n").map { String($0).trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        if let f = lines.first(where: { $0.hasPrefix("FAIL") || $0.contains(": FAIL") || $0.contains(" FAIL:") }) { return f }
        return lines.last ?? ""
    }
}
