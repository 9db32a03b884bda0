import Glibc

/// /proc/PID/limits: the soft and hard limit of each resource, readable where prlimit64 on a
/// task of another uid is refused (no CAP_SYS_RESOURCE). "unlimited" is RLIM_INFINITY.
public enum ProcLimitsParser {
    /// The kernel's names, in RLIMIT_* order (0 = RLIMIT_CPU ... 15 = RLIMIT_RTTIME).
    public static let names = ["Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
                               "Max resident set", "Max processes", "Max open files", "Max locked memory", "Max address space",
                               "Max file locks", "Max pending signals", "Max msgqueue size", "Max nice priority",
                               "Max realtime priority", "Max realtime timeout"]

    /// (soft, hard) for each resource, indexed by RLIMIT_* number; every one must be present.
    public static func parse(_ text: String, path: String) throws -> [(cur: UInt64, max: UInt64)] {
        var out = [(cur: UInt64, max: UInt64)?](repeating: nil, count: names.count)
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where n > 0 && !line.isEmpty {
            guard let i = names.firstIndex(where: { line.hasPrefix($0 + " ") }) else { continue }
            let words = line.dropFirst(names[i].count).split(separator: " ")
            guard words.count >= 2 else { throw ProcError.malformed(path: path, line: n + 1, reason: "no soft and hard limit") }
            func value(_ w: Substring) throws -> UInt64 {
                if w == "unlimited" { return UInt64.max }
                guard let v = UInt64(w) else { throw ProcError.malformed(path: path, line: n + 1, reason: "limit \"\(w)\" is not a number") }
                return v
            }
            out[i] = (try value(words[0]), try value(words[1]))
        }
        return try out.enumerated().map { i, v in
            guard let v else { throw ProcError.malformed(path: path, line: 0, reason: "no \"\(names[i])\" line") }
            return v
        }
    }
}

extension ProcReader {
    public func limits(pid: Int32) throws -> [(cur: UInt64, max: UInt64)] {
        let p = path(pid: pid, "limits")
        return try ProcLimitsParser.parse(try readText(p, pid: pid), path: p)
    }
}

extension ProcReader {
    /// Writes a /proc file of a task (oom_score_adj, ...), whole.
    public func write(_ text: String, to path: String) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ProcError.io(path: path, errno: errno) }
        defer { close(fd) }
        let b = Array(text.utf8)
        guard Glibc.write(fd, b, b.count) == b.count else { throw ProcError.io(path: path, errno: errno) }
    }
}
