/// One file lock as the kernel prints it in /proc/locks and in fdinfo "lock:" lines:
/// "1: POSIX  ADVISORY  WRITE 4242 fe:00:16556053 5 14", "2: LEASE  ACTIVE    READ ...";
/// a waiter's line has "->" after the number (only /proc/locks shows waiters).
public struct ProcFileLock: Sendable, Equatable {
    /// "POSIX", "FLOCK", "OFDLCK", "LEASE", "DELEG"...: kept as printed, so that a kind cryo
    /// does not know is named when it is refused.
    public var kind: String
    /// ADVISORY or MANDATORY for locks; ACTIVE, BREAKING or BREAKER for leases.
    public var mode: String
    /// READ, WRITE or UNLCK (a lease being broken to nothing).
    public var type: String
    /// The task that took it (-1 for OFD locks, which belong to an open file description).
    public var pid: Int32
    public var devMajor: UInt32
    public var devMinor: UInt32
    public var inode: UInt64
    public var start: Int64
    /// The last byte locked; nil for "EOF" (to the end of the file, whatever its size).
    public var end: Int64?
    /// A waiter blocked on another lock, not a lock held.
    public var blocked: Bool
    /// The line as printed (blanks collapsed), for messages.
    public var text: String

    public init(kind: String, mode: String, type: String, pid: Int32, devMajor: UInt32, devMinor: UInt32, inode: UInt64,
                start: Int64, end: Int64?, blocked: Bool = false, text: String = "") {
        self.kind = kind; self.mode = mode; self.type = type; self.pid = pid
        self.devMajor = devMajor; self.devMinor = devMinor; self.inode = inode
        self.start = start; self.end = end; self.blocked = blocked; self.text = text
    }
}

public enum ProcLocksParser {
    /// One line, with or without its "lock:" key (fdinfo) and leading blanks (/proc/locks).
    public static func parseLine(_ line: Substring, source: String, number: Int) throws -> ProcFileLock {
        func bad(_ why: String) -> ProcError { .malformed(path: source, line: number, reason: "lock: \(why): \"\(line.prefix(120))\"") }
        var w = ProcText.words(line)
        if w.first == "lock:" { w.removeFirst() }
        guard let id = w.first, id.hasSuffix(":"), Int(id.dropLast()) != nil else { throw bad("no lock number") }
        w.removeFirst()
        let blocked = w.first == "->"
        if blocked { w.removeFirst() }
        guard w.count == 7 else { throw bad("\(w.count) fields after the number, 7 expected") }
        guard let pid = Int32(w[3]) else { throw bad("pid") }
        let dev = w[4].split(separator: ":")
        guard dev.count == 3, let maj = UInt32(dev[0], radix: 16), let min = UInt32(dev[1], radix: 16), let ino = UInt64(dev[2]) else {
            throw bad("device and inode")
        }
        guard let start = Int64(w[5]) else { throw bad("start") }
        let end: Int64?
        if w[6] == "EOF" { end = nil } else {
            guard let e = Int64(w[6]) else { throw bad("end") }
            end = e
        }
        return ProcFileLock(kind: String(w[0]), mode: String(w[1]), type: String(w[2]), pid: pid, devMajor: maj, devMinor: min,
                            inode: ino, start: start, end: end, blocked: blocked,
                            text: ([id] + (blocked ? ["->"] : []) + w).joined(separator: " "))
    }

    /// /proc/locks: every lock on the machine, waiters included.
    public static func parse(_ text: String, source: String) throws -> [ProcFileLock] {
        var out: [ProcFileLock] = []
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !ProcText.trim(line).isEmpty {
            out.append(try parseLine(line, source: source, number: i + 1))
        }
        return out
    }
}
