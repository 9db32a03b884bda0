/// /proc/PID/fdinfo/N: the common header (pos, flags, mnt_id, ino) plus lines that depend on
/// the file kind. Every line is kept raw in `lines`; the simple kinds are also parsed.
public struct ProcFdInfo: Sendable, Equatable {
    public struct Line: Sendable, Equatable {
        /// Text before the first ':' ("pos", "tfd", "settime flags"); for "inotify wd:..." and
        /// "fanotify ...", the first word.
        public var key: String
        public var value: String
        public var number: Int
    }
    /// One epoll target: "tfd: 5 events: 19 data: 0000000000000007  pos:0 ino:3 sdev:d".
    public struct EpollTarget: Sendable, Equatable {
        public var tfd: Int32
        public var events: UInt32
        public var data: UInt64
        public var pos: Int64
        public var ino: UInt64
        public var sdev: UInt32
    }
    /// One inotify watch; every number is hex in the file.
    public struct InotifyWatch: Sendable, Equatable {
        public var wd: Int32
        public var ino: UInt64
        public var sdev: UInt32
        public var mask: UInt32
        public var ignoredMask: UInt32
        public var fhandleType: Int32?
        /// Raw file handle bytes (name_to_handle_at form), empty when the kernel did not show one.
        public var fhandle: [UInt8]
    }
    /// A fanotify group's "fanotify flags:N event-flags:N" line (hex).
    public struct FanotifyGroup: Sendable, Equatable {
        public var flags: UInt32
        public var eventFlags: UInt32
    }
    /// One fanotify mark; every number is hex in the file.
    public struct FanotifyMark: Sendable, Equatable {
        public enum Object: Sendable, Equatable {
            /// The file handle is absent when the kernel could not encode one.
            case inode(ino: UInt64, sdev: UInt32, fhandleType: Int32?, fhandle: [UInt8])
            case mount(id: Int32)
            /// A whole filesystem (FAN_MARK_FILESYSTEM: only sdev), or a kind not known here.
            case other
        }
        public var object: Object
        public var mflags: UInt32
        public var mask: UInt32
        public var ignoredMask: UInt32
    }
    public struct TimerFd: Sendable, Equatable {
        public var clockid: Int32 = 0
        public var ticks: UInt64 = 0
        /// TFD_TIMER_ABSTIME etc., octal in the file.
        public var settimeFlags: Int32 = 0
        public var valueSec: UInt64 = 0
        public var valueNsec: UInt64 = 0
        public var intervalSec: UInt64 = 0
        public var intervalNsec: UInt64 = 0
    }

    public var pos: Int64 = 0
    /// open(2) flags; octal in the file.
    public var flags: Int32 = 0
    public var mntId: Int32 = 0
    public var ino: UInt64 = 0
    /// Every line in order; repeated keys (tfd, inotify, lock) stay separate.
    public var lines: [Line] = []

    public var eventfdCount: UInt64?
    public var eventfdId: Int32?
    public var eventfdSemaphore: Bool?
    public var epollTargets: [EpollTarget] = []
    public var inotifyWatches: [InotifyWatch] = []
    public var fanotifyGroup: FanotifyGroup?
    /// In fdinfo's order: the newest mark first.
    public var fanotifyMarks: [FanotifyMark] = []
    /// Signals of a signalfd (hex in the file).
    public var signalfdMask: UInt64?
    public var timerfd: TimerFd?
    /// "lock:" lines: the file locks held through this fd.
    public var locks: [ProcFileLock] = []
    /// For a pidfd: the pid it refers to (-1 once that process is reaped).
    public var pidfdPid: Int32?
    /// For a pty master: the index of its pty (its slave is /dev/pts/INDEX).
    public var ttyIndex: UInt32?

    public init() {}

    public func values(_ key: String) -> [String] { lines.filter { $0.key == key }.map(\.value) }
    public func value(_ key: String) -> String? { lines.first { $0.key == key }?.value }
}

public enum ProcFdInfoParser {
    public static func parse(_ text: String, source: String) throws -> ProcFdInfo {
        var info = ProcFdInfo()
        var n = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            n += 1
            if raw.isEmpty { continue }
            guard let c = raw.firstIndex(of: ":") else {
                throw ProcError.malformed(path: source, line: n, reason: "no ':' in \"\(raw.prefix(80))\"")
            }
            var key = String(raw[..<c])
            var value = String(ProcText.trim(raw[raw.index(after: c)...]))
            for prefix in ["inotify ", "fanotify "] where key.hasPrefix(prefix) {
                key = String(prefix.dropLast())
                value = String(ProcText.trim(raw.dropFirst(prefix.count)))
            }
            info.lines.append(.init(key: key, value: value, number: n))
            try assign(&info, key: key, value: value, raw: raw, line: n, source: source)
        }
        return info
    }

    static func assign(_ f: inout ProcFdInfo, key: String, value v: String, raw: Substring, line: Int, source: String) throws {
        func bad(_ what: String = "bad value") -> ProcError {
            .malformed(path: source, line: line, reason: "\(key): \(what): \"\(raw.prefix(120))\"")
        }
        func num<T: FixedWidthInteger>(_ s: String?, radix: Int = 10, _: T.Type = T.self) throws -> T {
            guard let s, let x = T(s, radix: radix) else { throw bad() }
            return x
        }
        switch key {
        case "pos": f.pos = try num(v)
        case "flags": f.flags = Int32(bitPattern: try num(v, radix: 8, UInt32.self))
        case "mnt_id": f.mntId = try num(v)
        case "ino": f.ino = try num(v)
        case "eventfd-count": f.eventfdCount = try num(v, radix: 16)
        case "eventfd-id": f.eventfdId = try num(v)
        case "eventfd-semaphore": f.eventfdSemaphore = try num(v, UInt8.self) != 0
        case "sigmask": f.signalfdMask = try num(v, radix: 16)
        case "lock": f.locks.append(try ProcLocksParser.parseLine(Substring(v), source: source, number: line))
        case "Pid": f.pidfdPid = try num(v)
        case "tty-index": f.ttyIndex = try num(v)
        case "tfd":
            let p = pairs(raw)
            f.epollTargets.append(.init(tfd: try num(p["tfd"]), events: try num(p["events"], radix: 16),
                                        data: try num(p["data"], radix: 16), pos: try num(p["pos"] ?? "0"),
                                        ino: try num(p["ino"] ?? "0", radix: 16), sdev: try num(p["sdev"] ?? "0", radix: 16)))
        case "inotify":
            let p = pairs(Substring(v))
            f.inotifyWatches.append(.init(wd: try num(p["wd"], radix: 16), ino: try num(p["ino"], radix: 16),
                                          sdev: try num(p["sdev"], radix: 16), mask: try num(p["mask"], radix: 16),
                                          ignoredMask: try num(p["ignored_mask"] ?? "0", radix: 16),
                                          fhandleType: try p["fhandle-type"].map { try num($0, radix: 16) },
                                          fhandle: try handle(p, bad)))
        case "fanotify":
            let p = pairs(Substring(v))
            if let flags = p["flags"] {
                f.fanotifyGroup = .init(flags: try num(flags, radix: 16), eventFlags: try num(p["event-flags"], radix: 16))
                break
            }
            let object: ProcFdInfo.FanotifyMark.Object
            if let ino = p["ino"] {
                object = .inode(ino: try num(ino, radix: 16), sdev: try num(p["sdev"], radix: 16),
                                fhandleType: try p["fhandle-type"].map { try num($0, radix: 16) }, fhandle: try handle(p, bad))
            } else if let id = p["mnt_id"] {
                object = .mount(id: try num(id, radix: 16))
            } else {
                object = .other
            }
            f.fanotifyMarks.append(.init(object: object, mflags: try num(p["mflags"], radix: 16), mask: try num(p["mask"], radix: 16),
                                         ignoredMask: try num(p["ignored_mask"], radix: 16)))
        case "clockid":
            f.timerfd = f.timerfd ?? .init()
            f.timerfd?.clockid = try num(v)
        case "ticks":
            f.timerfd = f.timerfd ?? .init()
            f.timerfd?.ticks = try num(v)
        case "settime flags":
            f.timerfd = f.timerfd ?? .init()
            f.timerfd?.settimeFlags = Int32(bitPattern: try num(v, radix: 8, UInt32.self))
        case "it_value", "it_interval":
            // "(sec, nsec)"
            let inner = v.drop { $0 == "(" }.prefix { $0 != ")" }.split(separator: ",").map { ProcText.trim($0) }
            guard inner.count == 2, let s = UInt64(inner[0]), let ns = UInt64(inner[1]) else { throw bad() }
            f.timerfd = f.timerfd ?? .init()
            if key == "it_value" { f.timerfd?.valueSec = s; f.timerfd?.valueNsec = ns } else { f.timerfd?.intervalSec = s; f.timerfd?.intervalNsec = ns }
        default: break
        }
    }

    /// An inotify or fanotify line's f_handle bytes; empty when the line has none.
    static func handle(_ p: [String: String], _ bad: (String) -> ProcError) throws -> [UInt8] {
        guard let h = p["f_handle"] else { return [] }
        guard let b = hexBytes(h) else { throw bad("bad f_handle") }
        return b
    }

    /// fdinfo's f_handle: two hex digits a byte; nil for an odd length or another character.
    public static func hexBytes(_ text: String) -> [UInt8]? {
        let u = Array(text.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: u.count, by: 2) {
            guard let hi = ProcBytes.hexDigit(u[i]), let lo = ProcBytes.hexDigit(u[i + 1]) else { return nil }
            out.append(UInt8(hi << 4 | lo))
        }
        return out
    }

    /// "a:1 b: 2  c:3" -> [a: 1, b: 2, c: 3]; a key may be separated from its value by blanks.
    static func pairs(_ s: Substring) -> [String: String] {
        var out: [String: String] = [:]
        var pending: String?
        for w in ProcText.words(s) {
            if let k = pending { out[k] = String(w); pending = nil; continue }
            guard let c = w.firstIndex(of: ":") else { continue }
            let k = String(w[..<c]), v = w[w.index(after: c)...]
            if v.isEmpty { pending = k } else { out[k] = String(v) }
        }
        return out
    }
}
