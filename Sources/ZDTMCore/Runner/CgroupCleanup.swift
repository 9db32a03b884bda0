import Foundation
import Glibc

/// Workloads that make cgroups (cgroup00) list them, one path a line, in the case folder's
/// `cgroups` file before they enter them; zdtm removes them when the case ends, passed or
/// failed, once its processes are gone. Only test-owned directories are touched.
public enum CgroupCleanup {
    public static let listName = "cgroups"

    public static func remove(listedIn file: String) {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return }
        let paths = text.split(separator: "\n").map(String.init)
            .filter { $0.hasPrefix("/sys/fs/cgroup/") && ($0 as NSString).lastPathComponent.hasPrefix("cryo-test-") && !$0.contains("/../") }
        // Deepest first; a task just killed may hold its cgroup for a moment.
        for p in paths.sorted(by: { $0.count > $1.count }) {
            for _ in 0..<200 where rmdir(p) != 0 && errno == EBUSY { usleep(10_000) }
        }
    }
}
