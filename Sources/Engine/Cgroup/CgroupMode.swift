/// CRIU's --manage-cgroups modes: what restore does with the cgroups in cgroup.img.
public enum CgroupMode: String, CaseIterable, Sendable {
    /// Leave cgroups alone: the tree stays in cryo's.
    case ignore
    /// Put the tree back in its cgroups, which must exist; no properties.
    case none
    /// Put it back, cgroups must exist; write every property.
    case props
    /// Put it back, creating missing cgroups; properties only for the ones created (default).
    case soft
    /// Put it back, creating missing cgroups; every property.
    case full
    /// Every cgroup that holds properties must not exist yet; created with every property.
    case strict

    var createsMissing: Bool { self == .soft || self == .full || self == .strict }
}

/// The properties cryo carries, per controller, in the order they must be written (CRIU's
/// defaults for v1, their counterparts for v2).
enum CgroupProperties {
    static let v1: [String: [String]] = [
        "cpu": ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
        "memory": ["memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.swappiness"],
        "pids": ["pids.max"],
        "cpuset": ["cpuset.cpus", "cpuset.mems"],
    ]
    static let v2 = ["cpuset.cpus", "cpuset.mems", "cpu.weight", "cpu.max", "memory.min", "memory.low",
                     "memory.high", "memory.max", "memory.swap.max", "pids.max"]

    /// For a hierarchy named by its controllers ("cpu,cpuacct"; "" for v2).
    static func names(for controllers: String) -> [String] {
        if controllers.isEmpty { return v2 }
        return controllers.split(separator: ",").flatMap { v1[String($0)] ?? [] }
    }
}
