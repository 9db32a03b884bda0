import Foundation
import Glibc
import XCTest
import ZDTMCore

/// Propagation between the tree's mounts and cryo's namespace (docs/NAMESPACES.md,
/// "Propagation"), through the real CLI, in a mount namespace of the test's own where a tmpfs
/// is shared: a tree whose copy of it is a slave comes back a slave of the same group (mounts
/// made there after restore reach it); one whose copy is a peer is refused, left running.
final class MountPropagationTests: XCTestCase {
    func run(_ h: CRHarness, tree propagation: String, then body: String) throws -> String {
        guard access("/usr/bin/unshare", X_OK) == 0 else { throw XCTSkip("MountPropagationTests: no unshare(1)") }
        let work = h.dir + "/prop"
        try FileManager.default.createDirectory(atPath: work + "/d", withIntermediateDirectories: true)
        let (rc, out) = try CRHarness.capture("/bin/bash", ["-c", """
            unshare -m --propagation private bash -c '
              for fd in $(ls /proc/$$/fd); do [ $fd -gt 2 ] && eval "exec $fd>&-"; done
              cd \(work); mount -t tmpfs cryoprop d || exit 9; mount --make-shared d; mkdir d/x
              setsid unshare -m --propagation \(propagation) sleep 6071 </dev/null >/dev/null 2>&1 &
              pid=$!
              for i in $(seq 100); do [ "$(cat /proc/$pid/comm)" = sleep ] && break; sleep 0.05; done
              echo "cryo before: $(grep " \(work)/d " /proc/self/mountinfo)"
              echo "tree before: $(grep " \(work)/d " /proc/$pid/mountinfo)"
              \(body)
              true'
            """])
        XCTAssertEqual(rc, 0, out)
        return out
    }

    /// The shared:/master: tag of the line that starts with `prefix`.
    func tag(_ out: String, _ prefix: String, _ kind: String) -> String? {
        guard let line = out.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }),
              let r = line.range(of: " \(kind):") else { return nil }
        return String(line[r.upperBound...].prefix { $0.isNumber })
    }

    func testSlaveOfCryosMountComesBackASlaveOfIt() throws {
        let h = try CRHarness.make(name)
        let out = try run(h, tree: "slave", then: """
              \(h.bin)/cryo dump -t $pid -D img -o dump.log -v4 || { cat img/dump.log; exit 2; }
              \(h.bin)/cryo restore -D img -d --pidfile rpid -o restore.log -v4 || { cat img/restore.log; exit 3; }
              r=$(cat rpid)
              echo "tree after: $(grep " \(h.dir)/prop/d " /proc/$r/mountinfo)"
              mount -t tmpfs late d/x
              echo "late: $(grep -c " \(h.dir)/prop/d/x " /proc/$r/mountinfo)"
              kill -9 $r
            """)
        let group = try XCTUnwrap(tag(out, "cryo before:", "shared"), out)
        XCTAssertEqual(tag(out, "tree before:", "master"), group, out)
        XCTAssertNil(tag(out, "tree after:", "shared"), "a slave, not a peer: \(out)")
        XCTAssertEqual(tag(out, "tree after:", "master"), group, "a slave of cryo's group again: \(out)")
        XCTAssertTrue(out.contains("late: 1"), "a mount made in cryo's namespace after restore reaches the tree: \(out)")
    }

    func testPeerOfCryosMountIsRefused() throws {
        let h = try CRHarness.make(name)
        let out = try run(h, tree: "unchanged", then: """
              \(h.bin)/cryo dump -t $pid -D img; echo "dump exit $?"
              echo "state $(awk "{print \\$3}" /proc/$pid/stat) images $(ls img/*.img 2>/dev/null | wc -l)"
              kill -9 $pid
            """)
        let group = try XCTUnwrap(tag(out, "cryo before:", "shared"), out)
        XCTAssertEqual(tag(out, "tree before:", "shared"), group, out)
        XCTAssertTrue(out.contains("dump exit 1"), out)
        XCTAssertTrue(out.contains("at \(h.dir)/prop/d (tmpfs from cryoprop, root /) is a peer of group \(group) of cryo's namespace"), out)
        XCTAssertTrue(out.contains("state S images 0"), "left running, no images: \(out)")
    }
}
