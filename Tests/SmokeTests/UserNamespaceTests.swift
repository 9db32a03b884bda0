import Foundation
import Glibc
import XCTest
import Engine
import ZDTMCore

/// User namespaces through the real CLI (docs/NAMESPACES.md): the maps come back, the tree's
/// other namespaces are owned by the new user namespace again, creds are the same; a user
/// namespace shared with a process outside the tree is refused by name, the tree runs on.
final class UserNamespaceTests: XCTestCase {
    func harness() throws -> CRHarness {
        let h = try CRHarness.make("UserNamespaceTests")
        for tool in ["/usr/bin/unshare", "/usr/bin/setpriv", "/usr/bin/nsenter"] where access(tool, X_OK) != 0 {
            print("UserNamespaceTests: skipped, no \(tool)")
            throw XCTSkip("no \(tool)")
        }
        return h
    }

    /// Starts `argv` with none of our fds; returns (its pid, its only child's pid, or 0).
    func spawn(_ h: CRHarness, name: String, _ argv: [String], child: Bool) throws -> (Int32, Int32) {
        let work = h.dir + "/" + name
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let outer = try Subprocess.spawn(argv[0], Array(argv.dropFirst()), cwd: work, output: work + "/start.log")
        for _ in 0..<200 {
            if !child, (try? ProcReader().namespaceInode(pid: outer, kind: "user")) != (try? ProcReader().namespaceInode(pid: getpid(), kind: "user")) {
                return (outer, 0)
            }
            if child, let c = try? ProcReader().allChildren(pid: outer), let first = c.first { usleep(100_000); return (outer, first) }
            usleep(25_000)
        }
        XCTFail("\(argv) did not start")
        return (outer, 0)
    }

    /// The inode of the user namespace owning `pid`'s namespace of `kind` (NS_GET_USERNS).
    func owner(_ pid: Int32, _ kind: String) throws -> UInt64 {
        let fd = open("/proc/\(pid)/ns/\(kind)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(call: "open", errno: errno, context: kind) }
        defer { close(fd) }
        let u = ioctl(fd, 0xb701 /* NS_GET_USERNS */)
        guard u >= 0 else { throw SystemCallError(call: "ioctl(NS_GET_USERNS)", errno: errno, context: kind) }
        defer { close(u) }
        var st = stat()
        fstat(u, &st)
        return UInt64(st.st_ino)
    }

    func testUserNamespaceWithMapsComesBack() throws {
        let h = try harness()
        // zdtm's uns flavour: an init in new user (0 inside is 100000 outside), pid, mount, net,
        // uts and ipc namespaces, the user namespace owning the rest; a workload under it.
        let work = h.dir + "/uns"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let starter = try UnsFlavour().start(binary: h.bin + "/sleeping00", args: ["--pidfile=\(work)/pid", "--outfile=\(work)/out"], dir: work, log: work + "/start.log")
        XCTAssertEqual(try Subprocess.wait(starter, timeout: 30).map(Subprocess.exitCode), 0, (try? String(contentsOfFile: work + "/start.log", encoding: .utf8)) ?? "")
        let pid = try XCTUnwrap(Int32((try String(contentsOfFile: work + "/pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(pid, SIGKILL); h.waitGone([pid]) }
        let p = ProcReader()
        let img = work + "/img"
        let (d, dlog) = try h.cryo(["dump", "-t", "\(pid)", "-D", img])
        XCTAssertEqual(d, 0, dlog)
        h.waitGone([pid])
        let (_, crit) = try CRHarness.capture("/usr/bin/crit", ["show", img + "/core-1.img"])
        XCTAssertTrue(crit.contains("\"uid\": 0,"), "creds as the tree sees them inside: \(crit.prefix(3000))")
        let (_, users) = try CRHarness.capture("/usr/bin/bash", ["-c", "crit show \(img)/userns-*.img"])
        XCTAssertTrue(users.contains("\"lower_first\": 100000"), users)
        let (r, rlog) = try h.cryo(["restore", "-D", img, "-d", "--pidfile", work + "/rpid"])
        XCTAssertEqual(r, 0, rlog)
        let back = try XCTUnwrap(Int32((try String(contentsOfFile: work + "/rpid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        defer { kill(back, SIGKILL); h.waitGone([back]) }
        let mine = try p.namespaceInode(pid: getpid(), kind: "user")
        let theirs = try p.namespaceInode(pid: back, kind: "user")
        XCTAssertNotEqual(theirs, mine, "in a user namespace of its own")
        XCTAssertEqual(try p.idMap(pid: back, "uid_map"), [IdExtent(first: 0, lowerFirst: 100000, count: 65536)])
        XCTAssertEqual(try p.idMap(pid: back, "gid_map"), [IdExtent(first: 0, lowerFirst: 100000, count: 65536)])
        XCTAssertEqual(try p.status(pid: back).uids, [100000, 100000, 100000, 100000])
        XCTAssertEqual(try p.status(pid: back).gids, [100000, 100000, 100000, 100000])
        XCTAssertEqual(try p.status(pid: back).nsPid.last, 1, "the init is pid 1 again")
        for k in ["pid", "mnt", "uts", "ipc", "net"] { XCTAssertEqual(try owner(back, k), theirs, "its \(k) namespace is owned by its user namespace") }
        // Root inside may still change what its user namespace owns.
        let (rc, out) = try CRHarness.capture("/usr/bin/nsenter", ["-t", "\(back)", "-U", "-u", "hostname", "again"])
        XCTAssertEqual(rc, 0, out)
        // The workload under the init checks its own clock and reports.
        kill(back, SIGTERM)
        h.waitGone([back])
        XCTAssertEqual((try? String(contentsOfFile: work + "/out", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines), "PASS")
    }

    func testUserNamespaceSharedOutsideIsRefused() throws {
        let h = try harness()
        // unshare(1) makes the user namespace and stays in it as the tree's parent.
        let (outer, child) = try spawn(h, name: "shared", ["/usr/bin/unshare", "-U", "--map-root-user", "sh", "-c", "sleep 60 & wait"], child: true)
        defer { kill(child, SIGKILL); kill(outer, SIGKILL); h.waitGone([child, outer]) }
        let ino = try ProcReader().namespaceInode(pid: child, kind: "user")
        let img = h.dir + "/shared/img"
        let (code, log) = try h.cryo(["dump", "-t", "\(child)", "-D", img])
        XCTAssertNotEqual(code, 0)
        XCTAssertTrue(log.contains("pid \(child): user namespace user:[\(ino)] is shared with pid \(outer), outside the tree"), log)
        XCTAssertFalse(["t", "T"].contains(try ProcReader().stat(pid: child).state), "left running, not stopped or traced")
        XCTAssertEqual(kill(child, 0), 0, "still alive")
        XCTAssertEqual(((try? FileManager.default.contentsOfDirectory(atPath: img)) ?? []).filter { $0.hasSuffix(".img") }, [])
    }
}
