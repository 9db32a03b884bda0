/// One line of /proc/PID/mountinfo:
/// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
public struct ProcMount: Sendable, Equatable {
    public var mountId: Int32
    public var parentId: Int32
    public var devMajor: UInt32
    public var devMinor: UInt32
    /// Root of the mount within its filesystem; octal escapes (\040 ...) already decoded.
    public var root: String
    public var mountPoint: String
    /// Per-mount options ("rw,noatime").
    public var options: String
    /// Propagation tags between the options and "-": "shared:N", "master:N", "propagate_from:N", "unbindable".
    public var optionalFields: [String]
    public var fsType: String
    public var source: String
    /// Per-superblock options.
    public var superOptions: String

    public var optionList: [String] { options.split(separator: ",").map(String.init) }
    public var superOptionList: [String] { superOptions.split(separator: ",").map(String.init) }
    public var isReadOnly: Bool { optionList.first == "ro" }
    public var sharedGroup: Int32? { tag("shared:") }
    public var masterGroup: Int32? { tag("master:") }
    public var propagateFrom: Int32? { tag("propagate_from:") }
    public var isUnbindable: Bool { optionalFields.contains("unbindable") }
    private func tag(_ p: String) -> Int32? {
        optionalFields.first { $0.hasPrefix(p) }.flatMap { Int32($0.dropFirst(p.count)) }
    }
}

public enum ProcMountInfoParser {
    public static func parse(_ text: String, source: String) throws -> [ProcMount] {
        var out: [ProcMount] = []
        var n = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            n += 1
            if raw.isEmpty { continue }
            func bad(_ why: String) -> ProcError { .malformed(path: source, line: n, reason: "\(why) in \"\(raw.prefix(120))\"") }
            // Fields are single-space separated and never empty (the kernel escapes blanks).
            let f = raw.split(separator: " ", omittingEmptySubsequences: true)
            guard let sep = f.firstIndex(of: "-"), sep >= 6 else { throw bad("no '-' separator after 6 fields") }
            // An empty source (mount("", ...)) leaves two spaces: the tail is split keeping it.
            let tail = raw.range(of: " - ").map { raw[$0.upperBound...].split(separator: " ", omittingEmptySubsequences: false) } ?? []
            guard tail.count >= 3 else { throw bad("expected fstype, source and super options after '-'") }
            let dev = f[2].split(separator: ":")
            guard let id = Int32(f[0]), let parent = Int32(f[1]) else { throw bad("bad mount ids") }
            guard dev.count == 2, let maj = UInt32(dev[0]), let min = UInt32(dev[1]) else { throw bad("bad device \(f[2])") }
            out.append(ProcMount(mountId: id, parentId: parent, devMajor: maj, devMinor: min,
                                 root: unescape(f[3]), mountPoint: unescape(f[4]), options: String(f[5]),
                                 optionalFields: f[6..<sep].map(String.init), fsType: unescape(tail[0]),
                                 source: unescape(tail[1]), superOptions: unescape(tail[2])))
        }
        return out
    }

    /// The kernel writes space, tab, newline and backslash as \ooo in mountinfo.
    public static func unescape<S: StringProtocol>(_ s: S) -> String {
        guard s.contains("\\") else { return String(s) }
        let u = Array(s.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(u.count)
        var i = 0
        while i < u.count {
            if u[i] == 0x5c, i + 3 < u.count, (i + 1...i + 3).allSatisfy({ u[$0] >= 0x30 && u[$0] <= 0x37 }) {
                let v = (Int(u[i + 1]) - 0x30) << 6 | (Int(u[i + 2]) - 0x30) << 3 | (Int(u[i + 3]) - 0x30)
                if v <= 0xff { bytes.append(UInt8(v)); i += 4; continue }
            }
            bytes.append(u[i]); i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
