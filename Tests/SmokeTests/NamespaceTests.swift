import Foundation
import Glibc
import XCTest
import Engine
import ZDTMCore

/// Namespaces through the real CLI (docs/NAMESPACES.md): a tree in its own namespaces comes
/// back in new ones with its pids and hostname; what cannot be restored is refused by name and
/// leaves nothing behind.
final class NamespaceTests: XCTestCase {
    /// Runs a shell script to the end: exit status and output.
    func sh(_ script: String) throws -> (Int32, String) { try CRHarness.capture("/bin/bash", ["-c", script]) }

    func harness() throws -> CRHarness {
        let h = try CRHarness.make("NamespaceTests")
        guard access("/usr/bin/unshare", X_OK) == 0 else { throw XCTSkip("NamespaceTests: no unshare(1)") }
        return h
    }

    /// Starts `argv` (spawned with none of our fds, so no pipe of ours stays open) and returns
    /// (its pid, its only child's pid) once the child exists.
    func startWithChild(_ h: CRHarness, name: String, _ argv: [String]) throws -> (Int32, Int32) {
        let work = h.dir + "/" + name
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let outer = try Subprocess.spawn(argv[0], Array(argv.dropFirst()), cwd: work, output: "/dev/null")
        for _ in 0..<200 {
            if let c = try? ProcReader().allChildren(pid: outer), let first = c.first { usleep(100_000); return (outer, first) }
            usleep(25_000)
        }
        XCTFail("\(argv) made no child")
        return (outer, 0)
    }

    /// The host's `ip netns` mounts (other tests make and remove them all the time) are not
    /// the tree's: its copy drops them, as the ns flavour's init does, or a restore after one
    /// went away would be refused for the missing mount.
    let detachNetnsMounts = "while umount -l /run/netns 2>/dev/null; do :; done;"

    /// An init in new pid, mount, net, uts and ipc namespaces (as the ns flavour makes it).
    func startInit(_ h: CRHarness, name: String) throws -> Int32 {
        try startWithChild(h, name: name, ["/usr/bin/unshare", "-p", "-f", "unshare", "-m", "-n", "-u", "-i", "--mount-proc",
                                          "sh", "-c", "\(detachNetnsMounts) ip link set lo up; hostname nsbox; exec sleep 60"]).1
    }

    func testPidUtsNetMountNamespacesComeBack() throws {
        let h = try harness()
        let pid = try startInit(h, name: "ns")
        let img = h.dir + "/ns/img"
        let (d, dlog) = try h.cryo(["dump", "-t", "\(pid)", "-D", img])
        XCTAssertEqual(d, 0, dlog)
        let (r, rlog) = try h.cryo(["restore", "-D", img, "-d", "--pidfile", h.dir + "/ns/rpid"])
        XCTAssertEqual(r, 0, rlog)
        let back = try XCTUnwrap(Int32((try String(contentsOfFile: h.dir + "/ns/rpid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(back, SIGKILL); h.waitGone([back]) }
        XCTAssertEqual(try ProcReader().status(pid: back).nsPid.last, 1, "the init is pid 1 in its new pid namespace")
        XCTAssertNotEqual(try ProcReader().namespaceInode(pid: back, kind: "pid"), try ProcReader().namespaceInode(pid: getpid(), kind: "pid"))
        let (_, host) = try sh("nsenter -t \(back) -u hostname; nsenter -t \(back) -n ip -br link show lo; nsenter -t \(back) -m cat /proc/1/comm")
        let lines = host.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "nsbox")
        XCTAssertTrue(lines.count > 1 && lines[1].contains("UP"), host)
        XCTAssertEqual(lines.last, "sleep", "its /proc is its pid namespace's, whose init is the restored sleep: \(host)")
    }

    func testNamespaceSharedOutsideIsRefused() throws {
        let h = try harness()
        // The outer process makes the uts namespace and stays in it: the tree (its child) shares it.
        let work = h.dir + "/shared"
        let (outer, child) = try startWithChild(h, name: "shared", ["/usr/bin/unshare", "-u", "sh", "-c", "sleep 60 & wait"])
        defer { kill(child, SIGKILL); kill(outer, SIGKILL); h.waitGone([child, outer]) }
        let ino = try ProcReader().namespaceInode(pid: child, kind: "uts")
        let (code, log) = try h.cryo(["dump", "-t", "\(child)", "-D", work + "/img"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(log.contains("pid \(child): uts namespace uts:[\(ino)] is shared with pid \(outer), outside the tree"), log)
        XCTAssertFalse(["t", "T"].contains(try ProcReader().stat(pid: child).state), "left running, not stopped or traced")
        XCTAssertEqual(((try? FileManager.default.contentsOfDirectory(atPath: work + "/img")) ?? []).filter { $0.hasSuffix(".img") }, [])
        // Named external, the dump goes through.
        let (ok, okLog) = try h.cryo(["dump", "-t", "\(child)", "-D", work + "/img", "-R", "--external", "uts[\(ino)]:hostUts"])
        XCTAssertEqual(ok, 0, okLog)
    }

    /// Dumped where a tmpfs was mounted, restored after it is gone: refused, naming the mount,
    /// and no process is made. cryo runs in a mount namespace of the test's own.
    func testMountMissingAtRestoreIsRefused() throws {
        let h = try harness()
        let work = h.dir + "/mnt"
        try FileManager.default.createDirectory(atPath: work + "/m", withIntermediateDirectories: true)
        let (rc, out) = try sh("""
            unshare -m --propagation private bash -c '
              for fd in $(ls /proc/$$/fd); do [ $fd -gt 2 ] && eval "exec $fd>&-"; done
              cd \(work); mount -t tmpfs cryotest m || exit 9
              setsid unshare -p -f unshare -m -n -u -i --mount-proc sh -c "\(detachNetnsMounts) ip link set lo up; exec sleep 6073" </dev/null >/dev/null 2>&1 &
              for i in $(seq 100); do c=$(cat /proc/$!/task/*/children 2>/dev/null | tr -d " "); [ -n "$c" ] && break; sleep 0.05; done
              \(h.bin)/cryo dump -t $c -D img || exit 2
              umount m
              \(h.bin)/cryo restore -D img -d --pidfile rpid; echo "restore exit $?"
              ls rpid 2>/dev/null
              echo "left: $(grep -l "^sleep.6073" /proc/[0-9]*/cmdline 2>/dev/null | wc -l) mounts: $(grep -c cryotest /proc/self/mountinfo)"; true'
            """)
        XCTAssertEqual(rc, 0, out)
        XCTAssertTrue(out.contains("restore exit 1"), out)
        XCTAssertTrue(out.contains("mnt namespace: mount ") && out.contains("at \(work)/m (tmpfs from cryotest) is not in cryo's namespace here"), out)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/rpid"), "nothing restored")
        XCTAssertTrue(out.contains("left: 0 mounts: 0"), "no process of the tree and no mount left behind: \(out)")
    }
}
