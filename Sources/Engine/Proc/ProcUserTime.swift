import Foundation

/// One line of /proc/PID/uid_map or gid_map: ids `first`... inside are `lowerFirst`... in
/// the reader's user namespace (cryo's, the parent one for a tree's own namespace).
public struct IdExtent: Sendable, Equatable {
    public var first: UInt32
    public var lowerFirst: UInt32
    public var count: UInt32
    public init(first: UInt32, lowerFirst: UInt32, count: UInt32) { self.first = first; self.lowerFirst = lowerFirst; self.count = count }
}

/// A time namespace's offsets (/proc/PID/timens_offsets), seconds and nanoseconds.
public struct TimeOffsets: Sendable, Equatable {
    public var monotonic: (sec: Int64, nsec: Int64) = (0, 0)
    public var boottime: (sec: Int64, nsec: Int64) = (0, 0)
    public init() {}
    public static func == (a: TimeOffsets, b: TimeOffsets) -> Bool {
        a.monotonic == b.monotonic && a.boottime == b.boottime
    }
}

extension ProcReader {
    /// `file`: "uid_map" or "gid_map".
    public func idMap(pid: Int32, _ file: String) throws -> [IdExtent] {
        try Self.parseIdMap(readText(path(pid: pid, file), pid: pid))
    }

    static func parseIdMap(_ text: String) -> [IdExtent] {
        text.split(separator: "\n").compactMap { l in
            let f = l.split(separator: " ", omittingEmptySubsequences: true).compactMap { UInt32($0) }
            return f.count == 3 ? IdExtent(first: f[0], lowerFirst: f[1], count: f[2]) : nil
        }
    }

    /// "allow" or "deny".
    public func setgroups(pid: Int32) throws -> String {
        try readText(path(pid: pid, "setgroups"), pid: pid).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Offsets of the time namespace the task's children get (time_for_children).
    public func timeOffsets(pid: Int32) throws -> TimeOffsets {
        try Self.parseTimeOffsets(readText(path(pid: pid, "timens_offsets"), pid: pid))
    }

    static func parseTimeOffsets(_ text: String) -> TimeOffsets {
        var o = TimeOffsets()
        for l in text.split(separator: "\n") {
            let f = l.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count == 3, let s = Int64(f[1]), let n = Int64(f[2]) else { continue }
            // The kernel names them by clock id (1, 7) or by name, depending on the version.
            switch f[0] {
            case "monotonic", "1": o.monotonic = (s, n)
            case "boottime", "7": o.boottime = (s, n)
            default: break
            }
        }
        return o
    }
}
