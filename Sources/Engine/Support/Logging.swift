import Foundation
import Logging

/// CRIU-style logging: -v0 (errors only) .. -v4 (debug), optionally to a file, each line
/// stamped with the time since start, as CRIU prints "(00.012345)".
public enum CryoLog {
    public static func level(forVerbosity v: Int) -> Logger.Level {
        switch v {
        case ..<1: return .error
        case 1: return .warning
        case 2: return .info
        case 3: return .debug
        default: return .trace
        }
    }

    /// Installs the process-wide handler. Call once, from main.
    public static func bootstrap(verbosity: Int, file: String?) throws {
        let sink = try LogSink(path: file)
        let level = level(forVerbosity: verbosity)
        LoggingSystem.bootstrap { label in
            var h = CryoLogHandler(label: label, sink: sink)
            h.logLevel = level
            return h
        }
    }
}

final class LogSink: @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    let start = Date()

    init(path: String?) throws {
        if let path {
            let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
            if fd < 0 { throw SystemCallError(call: "open", errno: errno, context: "log file \(path)") }
            self.fd = fd
        } else {
            self.fd = 2
        }
    }

    func write(_ line: String) {
        lock.lock(); defer { lock.unlock() }
        var s = line
        s.withUTF8 { buf in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n <= 0 { break }
                off += n
            }
        }
    }
}

struct CryoLogHandler: LogHandler {
    let label: String
    let sink: LogSink
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    init(label: String, sink: LogSink) { self.label = label; self.sink = sink }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata extra: Logger.Metadata?,
             source: String, file: String, function: String, line: UInt) {
        let t = Date().timeIntervalSince(sink.start)
        let stamp = String(format: "(%02d.%06d)", Int(t), Int((t - Double(Int(t))) * 1_000_000))
        var md = metadata
        if let extra { md.merge(extra) { $1 } }
        let mdText = md.isEmpty ? "" : " " + md.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let lvl: String
        switch level {
        case .critical, .error: lvl = "Error "
        case .warning: lvl = "Warn  "
        default: lvl = ""
        }
        sink.write("\(stamp) \(lvl)\(label): \(message)\(mdText)\n")
    }
}

/// Named marks through one piece of work, logged at debug level as the time between them:
/// where a dump or restore of one task spends its time (-v4).
struct PhaseTimer {
    private var marks: [(String, Double)] = []
    init() { mark("start") }

    mutating func mark(_ name: String) {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        marks.append((name, Double(t.tv_sec) + Double(t.tv_nsec) / 1e9))
    }

    /// "phase 1.23ms, next 0.45ms", each phase named by the mark that ends it.
    var summary: String {
        zip(marks.dropFirst(), marks).map { "\($0.0.0) \(String(format: "%.2f", ($0.0.1 - $0.1.1) * 1000))ms" }.joined(separator: ", ")
    }
}
