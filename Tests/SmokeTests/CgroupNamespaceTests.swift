import Foundation
import Glibc
import XCTest
import Engine
import ZDTMCore

/// A tree in a cgroup namespace of its own, through the real CLI (docs/NAMESPACES.md): it
/// comes back in a new one rooted at the same cgroup, seen the same from inside and outside;
/// one shared with a process outside is refused unless named external. The test makes one
/// cgroup (and one below it) in the pids or v2 hierarchy, and removes them.
final class CgroupNamespaceTests: XCTestCase {
    func sh(_ script: String) throws -> (Int32, String) { try CRHarness.capture("/bin/bash", ["-c", script]) }

    /// A directory for the test under cryo's own cgroup of a hierarchy it can write.
    func makeCgroup(_ tag: String) throws -> String {
        guard access("/usr/bin/unshare", X_OK) == 0 else { throw XCTSkip("CgroupNamespaceTests: no unshare(1)") }
        let proc = ProcReader()
        let mounts = try proc.cgroupMounts(pid: getpid())
        let mine = try proc.cgroups(pid: getpid())
        for name in ["pids", ""] {
            guard let m = mounts[name], let c = mine.first(where: { $0.controllers == name }),
                  access(m + c.path + "/cgroup.procs", W_OK) == 0 else { continue }
            let dir = m + (c.path == "/" ? "" : c.path) + "/cryo-test-\(tag)-\(getpid())"
            guard mkdir(dir, 0o755) == 0, mkdir(dir + "/in", 0o755) == 0 else { throw XCTSkip("CgroupNamespaceTests: mkdir \(dir): \(String(cString: strerror(errno)))") }
            return dir
        }
        throw XCTSkip("CgroupNamespaceTests: no writable pids or v2 cgroup hierarchy")
    }

    func removeCgroup(_ dir: String) {
        for d in [dir + "/in", dir] { for _ in 0..<200 where rmdir(d) != 0 && errno == EBUSY { usleep(10_000) } }
    }

    func start(_ h: CRHarness, _ script: String) throws -> (Int32, Int32) {
        let outer = try Subprocess.spawn("/bin/sh", ["-c", script], cwd: h.dir, output: "/dev/null")
        for _ in 0..<200 {
            if let c = try? ProcReader().allChildren(pid: outer), let first = c.first { usleep(100_000); return (outer, first) }
            usleep(25_000)
        }
        XCTFail("no child of \(outer)")
        return (outer, 0)
    }

    /// The view of `pid`'s cgroups from inside the cgroup namespace of `in`.
    func inside(_ pid: Int32, from nsPid: Int32) throws -> String {
        let (rc, out) = try sh("nsenter -t \(nsPid) -C cat /proc/\(pid)/cgroup")
        XCTAssertEqual(rc, 0, out)
        return out
    }

    func testCgroupNamespaceComesBack() throws {
        let h = try CRHarness.make("CgroupNamespaceTests")
        let cg = try makeCgroup("cgns")
        defer { removeCgroup(cg) }
        // Moves itself to the namespace's root, unshares there, then goes one below.
        let (root, child) = try start(h, "echo $$ > \(cg)/cgroup.procs; exec unshare --cgroup sh -c 'echo $$ > \(cg)/in/cgroup.procs; sleep 60 & wait'")
        let proc = ProcReader()
        let outsideBefore = try proc.readText("/proc/\(root)/cgroup")
        let insideBefore = try inside(root, from: root)
        XCTAssertTrue(outsideBefore.contains(cg.split(separator: "/").last! + "/in\n"), outsideBefore)
        XCTAssertTrue(insideBefore.contains(":/in\n"), insideBefore)
        let img = h.dir + "/img"
        let (d, dlog) = try h.cryo(["dump", "-t", "\(root)", "-D", img])
        XCTAssertEqual(d, 0, dlog)
        h.waitGone([root, child])
        let (r, rlog) = try h.cryo(["restore", "-D", img, "-d", "--pidfile", h.dir + "/rpid"])
        XCTAssertEqual(r, 0, rlog)
        let back = try XCTUnwrap(Int32((try String(contentsOfFile: h.dir + "/rpid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        let kid = try XCTUnwrap(try proc.allChildren(pid: back).first)
        defer { kill(back, SIGKILL); kill(kid, SIGKILL); h.waitGone([back, kid]) }
        XCTAssertEqual(try proc.readText("/proc/\(back)/cgroup"), outsideBefore, "the same cgroups seen from outside")
        XCTAssertEqual(try inside(back, from: back), insideBefore, "the same cgroups seen from inside: the namespace's root is where it was")
        XCTAssertEqual(try inside(kid, from: back), insideBefore)
        let ns = try proc.namespaceInode(pid: back, kind: "cgroup")
        XCTAssertNotEqual(ns, try proc.namespaceInode(pid: getpid(), kind: "cgroup"), "a cgroup namespace of its own")
        XCTAssertEqual(try proc.namespaceInode(pid: kid, kind: "cgroup"), ns, "the child in its parent's")
        let (_, crit) = try sh("crit show \(img)/cgroup.img 2>&1 | grep -c cgns_prefix")
        if access("/usr/bin/crit", X_OK) == 0 { XCTAssertNotEqual(crit.trimmingCharacters(in: .whitespacesAndNewlines), "0", "cgns_prefix in cgroup.img as CRIU reads it") }
    }

    func testSharedOrIgnoredCgroupNamespaceIsRefused() throws {
        let h = try CRHarness.make("CgroupNamespaceTests")
        let cg = try makeCgroup("cgnsref")
        defer { removeCgroup(cg) }
        let (outer, child) = try start(h, "echo $$ > \(cg)/cgroup.procs; exec unshare --cgroup sh -c 'sleep 60 & wait'")
        defer { kill(child, SIGKILL); kill(outer, SIGKILL); h.waitGone([child, outer]) }
        let ino = try ProcReader().namespaceInode(pid: child, kind: "cgroup")
        let (code, log) = try h.cryo(["dump", "-t", "\(child)", "-D", h.dir + "/shared"])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(log.contains("pid \(child): cgroup namespace cgroup:[\(ino)] is shared with pid \(outer), outside the tree"), log)
        XCTAssertFalse(["t", "T"].contains(try ProcReader().stat(pid: child).state), "left running")
        XCTAssertEqual(((try? FileManager.default.contentsOfDirectory(atPath: h.dir + "/shared")) ?? []).filter { $0.hasSuffix(".img") }, [])
        // The whole tree, but without its cgroups: the namespace's roots would be lost.
        let (ign, ignLog) = try h.cryo(["dump", "-t", "\(outer)", "-D", h.dir + "/ignored", "--manage-cgroups=ignore"])
        XCTAssertNotEqual(ign, 0)
        XCTAssertTrue(ignLog.contains("pid \(outer): cgroup namespace cgroup:[\(ino)]") && ignLog.contains("--manage-cgroups=ignore"), ignLog)
        XCTAssertEqual(kill(outer, 0), 0, "left running")
        // Named external, the child alone dumps.
        let (ok, okLog) = try h.cryo(["dump", "-t", "\(child)", "-D", h.dir + "/ext", "-R", "--external", "cgroup[\(ino)]:hostCg"])
        XCTAssertEqual(ok, 0, okLog)
    }
}
