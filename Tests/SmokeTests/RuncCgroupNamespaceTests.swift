import Foundation
import Glibc
import XCTest
import Engine

/// runc's container in a cgroup namespace too (runc 1.1's `runc spec` leaves it out; runc
/// makes it when config.json asks): checkpointed and restored with cryo, the count carries on,
/// the restored init has a cgroup namespace of its own, and its cgroups are the same from
/// outside and, as the container writes them to /cg, from inside.
extension RuncTests {
    func testCgroupNamespaceContainer() throws {
        let url = URL(fileURLWithPath: bundle + "/config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var process = try XCTUnwrap(config["process"] as? [String: Any])
        process["args"] = ["/bin/sh", "-c", "exec </dev/null >/dev/null 2>&1; i=0; while :; do i=$((i+1)); cat /proc/self/cgroup > /cg; echo $i > /count; sleep 0.1; done"]
        config["process"] = process
        var linux = try XCTUnwrap(config["linux"] as? [String: Any])
        var spaces = try XCTUnwrap(linux["namespaces"] as? [[String: Any]])
        spaces.append(["type": "cgroup"])
        linux["namespaces"] = spaces
        config["linux"] = linux
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted]).write(to: url)
        try start()
        let proc = ProcReader()
        func initPid() throws -> Int32 {
            let (_, out) = try runcCmd(["state", id])
            let st = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any])
            return try XCTUnwrap((st["pid"] as? NSNumber)?.int32Value)
        }
        let before = try initPid()
        XCTAssertNotEqual(try proc.namespaceInode(pid: before, kind: "cgroup"), try proc.namespaceInode(pid: getpid(), kind: "cgroup"))
        let outside = try proc.readText("/proc/\(before)/cgroup")
        let inside = try proc.readText(bundle + "/rootfs/cg")
        XCTAssertTrue(inside.contains("pids:/\n") || inside.contains("0::/\n"), "inside, the container's cgroup is its root: \(inside)")
        let images = h.dir + "/ckpt"
        _ = try checkpoint(images)
        let saved = count()
        _ = try restore(images)
        XCTAssertGreaterThan(waitCount(above: saved), saved, "the count carries on from \(saved)")
        let after = try initPid()
        XCTAssertNotEqual(try proc.namespaceInode(pid: after, kind: "cgroup"), try proc.namespaceInode(pid: getpid(), kind: "cgroup"))
        XCTAssertEqual(try proc.readText("/proc/\(after)/cgroup"), outside)
        XCTAssertEqual(try proc.readText(bundle + "/rootfs/cg"), inside)
    }
}
