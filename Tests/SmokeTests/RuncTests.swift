import Foundation
import Engine
import Glibc
import XCTest
import ZDTMCore

/// Debian's runc checkpoints a busybox container with `--criu PATH_TO_CRYO`: runc speaks CRIU's
/// RPC to `cryo swrk`. The container's shell counts into /count; the count must carry on.
/// When runc asks for something cryo cannot do yet, the case skips and prints cryo's refusal.
/// runc, and cryo with it, runs in a private mount namespace of the test's own (held by a
/// sleeping process), so the mounts runc makes never reach the host's.
final class RuncTests: XCTestCase {
    var h: CRHarness!
    var runc = ""
    var bundle = "", state = "", id = ""
    var holder: Int32 = 0

    override func setUpWithError() throws {
        h = try CRHarness.make(name)
        guard let r = ["/usr/sbin/runc", "/usr/bin/runc"].first(where: FileManager.default.isExecutableFile(atPath:)),
              let bb = ["/usr/bin/busybox", "/bin/busybox"].first(where: FileManager.default.isExecutableFile(atPath:)) else {
            print("\(name): skipped, runc or busybox-static is not installed (ci/deps.sh installs them)")
            throw XCTSkip("no runc")
        }
        runc = r
        id = "cryo-test-\(getpid())-\(Int.random(in: 0..<1_000_000))"
        bundle = h.dir + "/bundle"
        state = h.dir + "/runc-state"
        try makeBundle(busybox: bb)
        holder = try Subprocess.spawn("/usr/bin/unshare", ["-m", "--propagation", "private", "/bin/sleep", "100000"])
        let ours = try ProcReader().namespaceInode(pid: getpid(), kind: "mnt")
        // Made private before it execs sleep.
        for _ in 0..<200 where ((try? String(contentsOfFile: "/proc/\(holder)/comm", encoding: .utf8)) ?? "") != "sleep\n" { usleep(10_000) }
        XCTAssertNotEqual(try ProcReader().namespaceInode(pid: holder, kind: "mnt"), ours, "runc's mount namespace is the test's own")
    }

    override func tearDown() {
        if !id.isEmpty, runc != "" { _ = try? runcCmd(["delete", "-f", id]) }
        if holder > 0 { Subprocess.kill9(holder) }
        h?.remove()
    }

    /// `argv` run inside the test's mount namespace, in the bundle.
    func inNamespace(_ argv: [String]) -> [String] {
        // env --chdir after setns: a directory opened before it would be unreachable inside.
        ["/usr/bin/nsenter", "-t", "\(holder)", "-m", "--", "/usr/bin/env", "--chdir=\(bundle)"] + argv
    }

    /// runc made its mounts in the test's namespace only: the host's mountinfo names no path of the test.
    func assertHostMountsUntouched() {
        let host = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        XCTAssertFalse(host.contains(h.dir), "a mount under \(h.dir) reached the host's namespace")
    }

    /// rootfs: busybox-static and its applets; config.json from `runc spec` with runc's default
    /// namespaces (pid, network, ipc, uts, mount), no terminal, a writable root, a shell whose
    /// stdio is the container's /dev/null (runc hands the container its own stdio, here the
    /// test's log file, which is outside the container's mounts), and no CRIU
    /// configuration file (the org.criu.config annotation set empty, so /etc/criu/runc.conf of
    /// the host does not change what runc asks).
    func makeBundle(busybox: String) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: bundle + "/rootfs/bin", withIntermediateDirectories: true)
        try fm.copyItem(atPath: busybox, toPath: bundle + "/rootfs/bin/busybox")
        for applet in ["sh", "sleep", "head", "tr", "cat"] { try fm.createSymbolicLink(atPath: bundle + "/rootfs/bin/" + applet, withDestinationPath: "busybox") }
        let (code, out) = try CRHarness.capture("/bin/sh", ["-c", "cd '\(bundle)' && '\(runc)' spec"])
        XCTAssertEqual(code, 0, out)
        let url = URL(fileURLWithPath: bundle + "/config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var process = try XCTUnwrap(config["process"] as? [String: Any])
        process["terminal"] = false
        // 8 MB held in the shell's memory: a pre-dump copies it, the final dump should not.
        process["args"] = ["/bin/sh", "-c", "exec </dev/null >/dev/null 2>&1; x=$(head -c 8000000 /dev/zero | tr '\\0' a); i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done"]
        config["process"] = process
        var root = try XCTUnwrap(config["root"] as? [String: Any])
        root["readonly"] = false
        config["root"] = root
        config["annotations"] = ["org.criu.config": ""]
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted]).write(to: url)
    }

    func runcCmd(_ args: [String], criu: Bool = false) throws -> (Int32, String) {
        let full = inNamespace([runc, "--root", state] + (criu ? ["--criu", h.bin + "/cryo"] : []) + args)
        let log = h.dir + "/runc-\(UUID().uuidString).log"
        let st = try Subprocess.run(full[0], Array(full.dropFirst()), cwd: bundle, log: log, timeout: 180)
        return (Subprocess.exitCode(st), (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// Where the test reads the container's /count (the overlay's upper layer when the rootfs is one).
    var countFile: String { overlay ? bundle + "/upper/count" : bundle + "/rootfs/count" }
    var overlay = false

    func count() -> Int { Int(((try? String(contentsOfFile: countFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 }

    /// Waits until the count passes `n`; the count reached.
    @discardableResult
    func waitCount(above n: Int, seconds: Double = 20) -> Int {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let c = count()
            if c > n { return c }
            usleep(50_000)
        }
        return count()
    }

    func start() throws {
        let (code, out) = try runcCmd(["run", "-d", "--no-new-keyring", id])
        guard code == 0 else {
            print("\(name): skipped, runc cannot start the container here: \(out)")
            throw XCTSkip("runc run failed")
        }
        XCTAssertGreaterThan(waitCount(above: 2), 2, "the container counts")
        assertHostMountsUntouched()
    }

    /// A failed runc step: a skip naming what cryo lacks, when cryo refused for that reason
    /// (its log says so); anything else fails the test.
    func failure(_ step: String, images: String, log: String, runcOut: String) throws -> Never {
        let text = (try? String(contentsOfFile: images + "/" + log, encoding: .utf8)) ?? ""
        let markers = ["cannot honour it yet", "cannot be dumped yet", "cannot restore", "which cryo cannot", "cannot dump yet"]
        if let line = text.split(separator: "\n").first(where: { l in l.contains("Error") && markers.contains { l.contains($0) } }) {
            print("\(name): skipped, runc \(step) needs what cryo cannot do yet: \(line)")
            throw XCTSkip("runc \(step): \(line)")
        }
        XCTFail("runc \(step) failed: \(runcOut)\n\(text.split(separator: "\n").suffix(15).joined(separator: "\n"))")
        throw XCTSkip("failed")
    }

    func checkpoint(_ images: String, _ extra: [String] = []) throws -> Double {
        let t0 = Date()
        let (code, out) = try runcCmd(["checkpoint", "--image-path", images] + extra + [id], criu: true)
        let took = Date().timeIntervalSince(t0)
        if code != 0 { try failure((["checkpoint"] + extra).joined(separator: " "), images: images, log: "dump.log", runcOut: out) }
        return took
    }

    func restore(_ images: String) throws -> Double {
        let t0 = Date()
        let (code, out) = try runcCmd(["restore", "-d", "--image-path", images, id], criu: true)
        let took = Date().timeIntervalSince(t0)
        if code != 0 { try failure("restore", images: images, log: "restore.log", runcOut: out) }
        assertHostMountsUntouched()
        return took
    }

    func running() -> Bool { ((try? runcCmd(["state", id]))?.1 ?? "").contains("\"running\"") }

    func testCheckpointThenRestoreCarriesTheCountOn() throws {
        try start()
        let images = h.dir + "/ckpt"
        let tc = try checkpoint(images)
        XCTAssertFalse(running(), "after a checkpoint the container is gone")
        let saved = count()
        usleep(500_000)
        XCTAssertEqual(count(), saved, "nothing counts while checkpointed")
        let tr = try restore(images)
        XCTAssertTrue(running())
        let after = waitCount(above: saved)
        XCTAssertGreaterThan(after, saved, "the count carries on from \(saved), not from 1")
        print("runc with cryo: checkpoint \(String(format: "%.3f", tc)) s, restore \(String(format: "%.3f", tr)) s")
    }

    /// cryo's own restore of runc's images, without the external mounts runc would map: refused
    /// naming the mount and its key, and nothing of the container runs.
    func testRestoreWithoutTheExternalMountsIsRefused() throws {
        try start()
        let images = h.dir + "/ckpt"
        _ = try checkpoint(images)
        let saved = count()
        let cmd = inNamespace([h.bin + "/cryo", "restore", "-D", images, "-d", "--root", bundle + "/rootfs", "--empty-ns", "net",
                               "--manage-cgroups=ignore", "-o", h.dir + "/refused.log", "-v4"])
        let (code, out) = try CRHarness.capture(cmd[0], Array(cmd.dropFirst()))
        let log = (try? String(contentsOfFile: h.dir + "/refused.log", encoding: .utf8)) ?? ""
        XCTAssertNotEqual(code, 0, out)
        XCTAssertTrue((out + log).contains("restore needs --external mnt[/sys/fs/cgroup/") || (out + log).contains("restore needs --external mnt["), out + log)
        // The source of that mount missing on restore: named, with the path given.
        let key = try XCTUnwrap((out + log).range(of: "restore needs --external mnt[").map { r in String((out + log)[r.upperBound...].prefix { $0 != "]" }) })
        let missing = inNamespace([h.bin + "/cryo", "restore", "-D", images, "-d", "--root", bundle + "/rootfs", "--empty-ns", "net", "--manage-cgroups=ignore",
                                   "--external", "mnt[\(key)]:/nonexistent-cryo-source", "-o", h.dir + "/missing.log", "-v4"])
        let (mcode, mout) = try CRHarness.capture(missing[0], Array(missing.dropFirst()))
        let mlog = (try? String(contentsOfFile: h.dir + "/missing.log", encoding: .utf8)) ?? ""
        XCTAssertNotEqual(mcode, 0, mout)
        XCTAssertTrue((mout + mlog).contains("is external \(key), mapped to /nonexistent-cryo-source, which does not exist"), mout + mlog)
        usleep(500_000)
        XCTAssertEqual(count(), saved, "nothing of the refused restores counts on")
        let sh = try ProcReader().mountinfo(pid: holder).filter { $0.mountPoint.hasPrefix(bundle) }
        XCTAssertEqual(sh.map(\.mountPoint), [], "no mount of the refused restores is left in cryo's namespace")
    }

    /// The shell keeps runc's stdio (the test's log file, on a mount outside the container):
    /// refused at dump naming the fd, and the container runs on.
    func testFileOutsideTheContainerIsRefused() throws {
        let url = URL(fileURLWithPath: bundle + "/config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var process = try XCTUnwrap(config["process"] as? [String: Any])
        process["args"] = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done"]
        config["process"] = process
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted]).write(to: url)
        try start()
        let images = h.dir + "/ckpt"
        let (code, _) = try runcCmd(["checkpoint", "--image-path", images, id], criu: true)
        XCTAssertNotEqual(code, 0)
        let log = (try? String(contentsOfFile: images + "/dump.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(log.contains("fd 1 (") && log.contains("which is not in the tree's own mount tree"), log)
        XCTAssertTrue(running(), "a refused checkpoint leaves the container running")
        let c = count()
        XCTAssertGreaterThan(waitCount(above: c), c, "the container counts on")
    }

    func testCheckpointLeaveRunning() throws {
        try start()
        let images = h.dir + "/ckpt"
        _ = try checkpoint(images, ["--leave-running"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: images + "/inventory.img"))
        XCTAssertTrue(running())
        let c = count()
        XCTAssertGreaterThan(waitCount(above: c), c, "the container counts on")
    }

    func testPreDumpThenCheckpointWithParent() throws {
        try start()
        let pre = h.dir + "/pre", final = h.dir + "/final"
        _ = try checkpoint(pre, ["--pre-dump"])
        XCTAssertTrue(running(), "a pre-dump leaves the container running")
        _ = try checkpoint(final, ["--parent-path", "../pre"])
        let preBytes = try h.pagesBytes(pre), finalBytes = try h.pagesBytes(final)
        XCTAssertGreaterThan(preBytes, 8_000_000)
        XCTAssertLessThan(finalBytes, preBytes / 4, "the final images hold only what changed since the pre-dump")
        print("runc pre-dump \(preBytes) bytes of pages, final checkpoint \(finalBytes)")
        let saved = count()
        _ = try restore(final)
        XCTAssertGreaterThan(waitCount(above: saved), saved)
    }

    /// runc with its stdio on pipes (as containerd starts it), run from a Process of ours.
    /// Returns runc's exit status and the pipes' ends the test keeps: the container's stdin
    /// (write end) and stdout (read end).
    func runcPiped(_ args: [String], criu: Bool = false) throws -> (Int32, stdin: FileHandle, stdout: FileHandle, String) {
        let p = Process()
        let full = inNamespace([runc, "--root", state] + (criu ? ["--criu", h.bin + "/cryo"] : []) + args)
        p.executableURL = URL(fileURLWithPath: full[0])
        p.arguments = Array(full.dropFirst())
        p.currentDirectoryURL = URL(fileURLWithPath: bundle)
        let i = Pipe(), o = Pipe(), e = Pipe()
        p.standardInput = i
        p.standardOutput = o
        p.standardError = e
        try p.run()
        p.waitUntilExit()
        // The container holds the other ends; runc's errors, if any, are on stderr.
        let err = fcntl(e.fileHandleForReading.fileDescriptor, F_SETFL, O_NONBLOCK) == 0 ? String(decoding: (try? e.fileHandleForReading.read(upToCount: 65536)) ?? Data(), as: UTF8.self) : ""
        return (p.terminationStatus, i.fileHandleForWriting, o.fileHandleForReading, err)
    }

    /// The last number the container wrote on `fd` within `seconds` (0 if none).
    func lastLine(_ fh: FileHandle, seconds: Double) -> Int {
        let fd = fh.fileDescriptor
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var text = ""
        let deadline = Date().addingTimeInterval(seconds)
        var buf = [UInt8](repeating: 0, count: 65536)
        while Date() < deadline {
            let n = read(fd, &buf, buf.count)
            if n > 0 { text += String(decoding: buf[0..<n], as: UTF8.self) } else { usleep(50_000) }
        }
        return text.split(separator: "\n").compactMap { Int($0) }.last ?? 0
    }

    /// The container's stdio are pipes the test holds (containerd's way): runc records them,
    /// cryo dumps them as pipes shared with a process outside, and runc's restore hands its own
    /// new pipes back through inherit_fd. The count carries on, written into the new pipe.
    func testPipedStdioIsHandedBackOnRestore() throws {
        let url = URL(fileURLWithPath: bundle + "/config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var process = try XCTUnwrap(config["process"] as? [String: Any])
        process["args"] = ["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i > /count; echo $i; sleep 0.1; done"]
        config["process"] = process
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted]).write(to: url)
        let (rc, stdin0, stdout0, err0) = try runcPiped(["run", "-d", "--no-new-keyring", id])
        guard rc == 0 else {
            print("\(name): skipped, runc cannot start the container here: \(err0)")
            throw XCTSkip("runc run failed")
        }
        XCTAssertGreaterThan(lastLine(stdout0, seconds: 1), 2, "the container writes its count into the pipe")
        assertHostMountsUntouched()
        let images = h.dir + "/ckpt"
        _ = try checkpoint(images)
        let saved = count()
        let fds = (try? String(contentsOfFile: images + "/descriptors.json", encoding: .utf8)) ?? ""
        XCTAssertTrue(fds.contains("pipe:["), "runc recorded the stdio pipes: \(fds)")
        try? stdin0.close()
        try? stdout0.close()
        let t0 = Date()
        let (rrc, stdin1, stdout1, err1) = try runcPiped(["restore", "-d", "--image-path", images, id], criu: true)
        if rrc != 0 { try failure("restore (piped stdio)", images: images, log: "restore.log", runcOut: err1) }
        print("runc restore with piped stdio: \(String(format: "%.3f", Date().timeIntervalSince(t0))) s")
        defer { try? stdin1.close(); try? stdout1.close() }
        let restoreLog = (try? String(contentsOfFile: images + "/restore.log", encoding: .utf8)) ?? ""
        XCTAssertTrue(restoreLog.contains("--inherit-fd fd[1]:pipe:["), "runc handed the pipe back: \(restoreLog.split(separator: "\n").filter { $0.contains("rpc:") }.joined(separator: "\n"))")
        XCTAssertGreaterThan(lastLine(stdout1, seconds: 1.5), saved, "the count carries on from \(saved) into the new pipe")
        XCTAssertTrue(running())
    }

    /// The container's init, as `runc state` shows it.
    func containerPid() throws -> Int32 {
        let (_, out) = try runcCmd(["state", id])
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], out)
        return try XCTUnwrap(json["pid"] as? Int32 ?? (json["pid"] as? Int).map(Int32.init), out)
    }

    /// mountpoint -> (shared, master) of the mounts at `points` in `pid`'s mountinfo; the group
    /// numbers renumbered by first appearance, unless `raw`.
    func propagation(_ pid: Int32, _ points: [String], raw: Bool = false) throws -> [String] {
        let ms = try ProcReader().mountinfo(pid: pid)
        var seen: [Int32] = []
        func n(_ g: Int32?) -> String {
            guard let g else { return "-" }
            if raw { return "\(g)" }
            if !seen.contains(g) { seen.append(g) }
            return "\(seen.firstIndex(of: g)! + 1)"
        }
        return points.map { p in
            guard let m = ms.last(where: { $0.mountPoint == p }) else { return "\(p): none" }
            return "\(p): shared \(n(m.sharedGroup)) master \(n(m.masterGroup))"
        }
    }

    /// Propagation in a container (a tree of its own, pivot_root): a shared tmpfs the container
    /// made, a peer and a slave of it, and a bind (rslave) of a tmpfs shared in the test's
    /// namespace, whose master is outside the container. runc's checkpoint and restore bring
    /// back the same graph, the outside master the same group: a mount made outside after
    /// restore reaches the container.
    func testPropagationInTheContainerComesBack() throws {
        let shared = h.dir + "/shared"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        let prep = inNamespace(["/bin/sh", "-c", "mount -t tmpfs cryoshared \(shared) && mount --make-shared \(shared) && mkdir \(shared)/x"])
        let (pc, pout) = try CRHarness.capture(prep[0], Array(prep.dropFirst()))
        XCTAssertEqual(pc, 0, pout)
        for d in ["p", "q", "s", "ext"] { try FileManager.default.createDirectory(atPath: bundle + "/rootfs/" + d, withIntermediateDirectories: true) }
        try FileManager.default.createSymbolicLink(atPath: bundle + "/rootfs/bin/mount", withDestinationPath: "busybox")
        let url = URL(fileURLWithPath: bundle + "/config.json")
        var config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var process = try XCTUnwrap(config["process"] as? [String: Any])
        process["args"] = ["/bin/sh", "-c", "exec </dev/null >/dev/null 2>&1; mount -t tmpfs cryop /p && mount --make-shared /p && mount --bind /p /q && "
                           + "mount --bind /p /s && mount --make-slave /s || exit 1; i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done"]
        var caps = try XCTUnwrap(process["capabilities"] as? [String: [String]])
        for k in caps.keys { caps[k] = (caps[k] ?? []) + ["CAP_SYS_ADMIN"] }
        process["capabilities"] = caps
        config["process"] = process
        var mounts = try XCTUnwrap(config["mounts"] as? [[String: Any]])
        mounts.append(["destination": "/ext", "type": "bind", "source": shared, "options": ["rbind", "rslave"]])
        config["mounts"] = mounts
        try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted]).write(to: url)
        try start()
        let points = ["/p", "/q", "/s", "/ext"]
        let before = try propagation(try containerPid(), points)
        XCTAssertEqual(before, ["/p: shared 1 master -", "/q: shared 1 master -", "/s: shared - master 1", "/ext: shared - master 2"], "as the container made them")
        let outsideGroup = try XCTUnwrap(try ProcReader().mountinfo(pid: holder).last { $0.mountPoint == shared }?.sharedGroup)
        XCTAssertEqual(try propagation(try containerPid(), ["/ext"], raw: true), ["/ext: shared - master \(outsideGroup)"])
        let images = h.dir + "/ckpt"
        _ = try checkpoint(images)
        let saved = count()
        _ = try restore(images)
        XCTAssertGreaterThan(waitCount(above: saved), saved, "the count carries on")
        let pid = try containerPid()
        XCTAssertEqual(try propagation(pid, points), before, "the same peers and masters, renumbered")
        XCTAssertEqual(try propagation(pid, ["/ext"], raw: true), ["/ext: shared - master \(outsideGroup)"], "a slave of the same group outside")
        let late = inNamespace(["/bin/sh", "-c", "mount -t tmpfs cryolate \(shared)/x"])
        let (lc, lout) = try CRHarness.capture(late[0], Array(late.dropFirst()))
        XCTAssertEqual(lc, 0, lout)
        XCTAssertTrue(try ProcReader().mountinfo(pid: pid).contains { $0.mountPoint == "/ext/x" }, "a mount made outside after restore reaches the container")
    }

    /// An overlayfs root, as Docker and Podman give containers: the busybox tree is the lower
    /// layer, the container writes into the upper one, the overlay is mounted at rootfs in the
    /// test's namespace. runc's checkpoint and restore (its --root a bind of that overlay) bring
    /// the container back on the same files: the count carries on in the upper layer.
    func testOverlayRootComesBack() throws {
        let fm = FileManager.default
        try fm.moveItem(atPath: bundle + "/rootfs", toPath: bundle + "/lower")
        for d in ["rootfs", "upper", "work"] { try fm.createDirectory(atPath: bundle + "/" + d, withIntermediateDirectories: true) }
        let mount = inNamespace(["/bin/mount", "-t", "overlay", "cryooverlay", "-o", "lowerdir=\(bundle)/lower,upperdir=\(bundle)/upper,workdir=\(bundle)/work", bundle + "/rootfs"])
        let (mc, mout) = try CRHarness.capture(mount[0], Array(mount.dropFirst()))
        guard mc == 0 else {
            print("\(name): skipped, no overlayfs here: \(mout)")
            throw XCTSkip("no overlayfs")
        }
        overlay = true
        try start()
        let root = try XCTUnwrap(try ProcReader().mountinfo(pid: try containerPid()).first { $0.mountPoint == "/" })
        XCTAssertEqual(root.fsType, "overlay", "the container's root is the overlay")
        let images = h.dir + "/ckpt"
        _ = try checkpoint(images)
        let saved = count()
        XCTAssertGreaterThan(saved, 0, "the count is written into the upper layer")
        _ = try restore(images)
        XCTAssertGreaterThan(waitCount(above: saved), saved, "the count carries on from \(saved) on the overlay")
        XCTAssertEqual(try ProcReader().mountinfo(pid: try containerPid()).first { $0.mountPoint == "/" }?.fsType, "overlay")
    }
}
