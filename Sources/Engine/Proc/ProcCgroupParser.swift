/// One line of /proc/PID/cgroup: "4:memory:/a/b", "1:name=systemd:/", "0::/x" (cgroup v2).
public struct ProcCgroup: Sendable, Equatable, Hashable {
    public var hierarchy: Int
    /// The hierarchy's controllers as the kernel lists them ("cpu,cpuacct", "name=systemd"),
    /// empty for cgroup v2 (CRIU's name for the unified hierarchy too).
    public var controllers: String
    public var path: String
}

public enum ProcCgroupParser {
    public static func parse(_ text: String, source: String) throws -> [ProcCgroup] {
        var out: [ProcCgroup] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard f.count == 3, let h = Int(f[0]), f[2].hasPrefix("/") else {
                throw ProcError.malformed(path: source, line: n + 1, reason: "not HIERARCHY:CONTROLLERS:PATH")
            }
            out.append(ProcCgroup(hierarchy: h, controllers: String(f[1]), path: String(f[2])))
        }
        return out
    }
}

extension ProcReader {
    public func cgroups(pid: Int32) throws -> [ProcCgroup] {
        let p = path(pid: pid, "cgroup")
        return try ProcCgroupParser.parse(try readText(p, pid: pid), source: p)
    }

    public func taskCgroups(pid: Int32, tid: Int32) throws -> [ProcCgroup] {
        let p = path(pid: pid, tid: tid, "cgroup")
        return try ProcCgroupParser.parse(try readText(p, pid: pid, tid: tid), source: p)
    }

    /// Where each cgroup hierarchy of `pid`'s (cryo's own) is mounted whole: cgroup v1 mounts
    /// by their controllers, the v2 mount under "".
    public func cgroupMounts(pid: Int32) throws -> [String: String] {
        let mine = try cgroups(pid: pid)
        let mounts = try mountinfo(pid: pid).filter { ($0.fsType == "cgroup" || $0.fsType == "cgroup2") && $0.root == "/" }
        var out: [String: String] = [:]
        for c in mine where out[c.controllers] == nil {
            if c.controllers.isEmpty {
                if let m = mounts.first(where: { $0.fsType == "cgroup2" }) { out[""] = m.mountPoint }
                continue
            }
            let want = Set(c.controllers.split(separator: ",").map(String.init))
            if let m = mounts.first(where: { $0.fsType == "cgroup" && want.isSubset(of: Set($0.superOptionList)) }) {
                out[c.controllers] = m.mountPoint
            }
        }
        return out
    }
}
