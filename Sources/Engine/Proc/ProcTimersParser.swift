/// One POSIX timer as /proc/PID/timers shows it.
public struct ProcPosixTimer: Equatable, Sendable {
    public var id: Int32 = 0
    public var signal: Int32 = 0
    public var sivalPtr: UInt64 = 0
    /// SIGEV_SIGNAL (0), SIGEV_NONE (1), SIGEV_THREAD_ID (4, with `notifyTid`).
    public var notify: Int32 = 0
    public var notifyTid: Int32 = 0
    public var clock: Int32 = 0
}

/// /proc/PID/timers: blocks of "ID:", "signal: SIG/PTR", "notify: KIND/pid.N|tid.N", "ClockID:".
public enum ProcTimersParser {
    public static func parse(_ text: String, path: String) throws -> [ProcPosixTimer] {
        var out: [ProcPosixTimer] = []
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            guard let colon = line.firstIndex(of: ":") else {
                throw ProcError.malformed(path: path, line: n + 1, reason: "no ':' in \"\(line)\"")
            }
            let key = line[..<colon], value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            func bad() -> ProcError { ProcError.malformed(path: path, line: n + 1, reason: "bad \(key): \"\(value)\"") }
            switch key {
            case "ID":
                guard let id = Int32(value) else { throw bad() }
                out.append(ProcPosixTimer(id: id))
            case "signal":
                let parts = value.split(separator: "/")
                guard !out.isEmpty, parts.count == 2, let sig = Int32(parts[0]), let ptr = UInt64(parts[1].hasPrefix("0x") ? parts[1].dropFirst(2) : parts[1], radix: 16) else { throw bad() }
                out[out.count - 1].signal = sig
                out[out.count - 1].sivalPtr = ptr
            case "notify":
                let parts = value.split(separator: "/")
                guard !out.isEmpty, parts.count == 2 else { throw bad() }
                let target = parts[1].split(separator: ".")
                guard target.count == 2, let who = Int32(target[1]) else { throw bad() }
                switch parts[0] {
                case "signal": out[out.count - 1].notify = target[0] == "tid" ? 4 : 0
                case "thread": out[out.count - 1].notify = 4
                case "none": out[out.count - 1].notify = 1
                default: throw bad()
                }
                if target[0] == "tid" { out[out.count - 1].notify = 4; out[out.count - 1].notifyTid = who }
            case "ClockID":
                guard !out.isEmpty, let c = Int32(value) else { throw bad() }
                out[out.count - 1].clock = c
            default:
                continue
            }
        }
        return out
    }
}
