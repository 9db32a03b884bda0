import Foundation
import Glibc
import XCTest
import Engine
import CKernel
import ZDTMCore

/// --shell-job: a job of a shell, writing to the shell's terminal, is dumped, and restored from
/// another session on another terminal: it joins cryo's session and writes to cryo's terminal.
final class ShellJobTests: XCTestCase {
    struct Pty { let master: Int32; let slave: String }

    func openPty() throws -> Pty {
        var name = [CChar](repeating: 0, count: 128)
        let m = ck_open_pty(&name, name.count)
        guard m >= 0 else {
            print("ShellJobTests: skipped, no pty (errno \(-m))")
            throw XCTSkip("no pty")
        }
        _ = fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK)
        return Pty(master: m, slave: String(cString: name))
    }

    /// Runs `args` in a new session whose controlling terminal is `pty` (stdio on it).
    func spawnOnTerminal(_ pty: Pty, _ args: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        p.arguments = ["-c"] + args
        let slave = try FileHandle(forUpdating: URL(fileURLWithPath: pty.slave))
        p.standardInput = slave; p.standardOutput = slave; p.standardError = slave
        try p.run()
        try slave.close()
        return p
    }

    /// Reads the terminal until a line with a number above `after` shows (or `timeout`).
    func counter(on pty: Pty, above after: Int, timeout: Double = 10) -> Int? {
        var text = ""
        let deadline = Date().addingTimeInterval(timeout)
        var buf = [UInt8](repeating: 0, count: 4096)
        while Date() < deadline {
            let n = read(pty.master, &buf, buf.count)
            if n > 0 { text += String(decoding: buf[0..<n], as: UTF8.self) } else { usleep(20_000) }
            let numbers = text.split(whereSeparator: \.isNewline).compactMap { Int($0) }
            if let last = numbers.last, last > after { return last }
        }
        print("ShellJobTests: terminal \(pty.slave) showed: \(text.prefix(300).debugDescription)")
        return nil
    }

    func testShellJobMovesToTheCallersTerminal() throws {
        let h = try CRHarness.make("ShellJobTests")
        defer { h.remove() }
        guard access("/usr/bin/setsid", X_OK) == 0, access("/usr/bin/python3", X_OK) == 0 else {
            print("ShellJobTests: skipped, needs /usr/bin/setsid (util-linux) and python3")
            throw XCTSkip("no setsid or python3")
        }
        let a = try openPty(), b = try openPty()
        defer { close(a.master); close(b.master) }
        let pidfile = h.dir + "/job.pid"
        // The job drops what it inherited from the test runner (Foundation passes every fd on).
        let loop = "import os, time\nos.closerange(3, 65536)\nn = 0\nwhile True:\n    n += 1\n    print(n, flush=True)\n    time.sleep(0.05)\n"
        // A shell (the session leader, on terminal A) with a job in its session.
        let shell = try spawnOnTerminal(a, ["/bin/sh", "-c", "python3 -c '\(loop)' & echo $! > \(pidfile); wait"])
        guard let before = counter(on: a, above: 5) else { shell.terminate(); return XCTFail("the job never wrote to its terminal") }
        let pid = try XCTUnwrap(Int32((try String(contentsOfFile: pidfile, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        let images = h.dir + "/img"
        let (dc, dout) = try h.cryo(["dump", "-j", "-t", "\(pid)", "-D", images, "-v4", "-o", h.dir + "/dump.log"])
        guard dc == 0 else { kill(pid, SIGKILL); shell.waitUntilExit(); return XCTFail("dump exited \(dc): \(dout.suffix(600)) \((try? String(contentsOfFile: h.dir + "/dump.log", encoding: .utf8)) ?? "")") }
        shell.waitUntilExit()  // its job is gone, and so is the shell
        h.waitGone([pid])

        // Without --shell-job the restore refuses: the job's session is not in the tree.
        let (rc0, rout0) = try h.cryo(["restore", "-D", images, "-d"])
        XCTAssertNotEqual(rc0, 0)
        XCTAssertTrue(rout0.contains("session"), rout0)
        XCTAssertNotEqual(kill(pid, 0), 0, "a refused restore left pid \(pid) behind")

        // From another session on terminal B, cryo restores the job in the foreground.
        let restorer = try spawnOnTerminal(b, [h.bin + "/cryo", "restore", "--shell-job", "-D", images])
        defer { if kill(pid, 0) == 0 { kill(pid, SIGKILL) }; restorer.waitUntilExit() }
        let after = counter(on: b, above: before)
        XCTAssertNotNil(after, "the restored job does not write to the caller's terminal")
        let st = try ProcReader().stat(pid: pid)
        // Its parent is the cryo that restored it, which leads the session on terminal B.
        XCTAssertEqual(st.session, st.ppid, "the job did not join cryo's session")
        XCTAssertEqual(try ProcReader().stat(pid: st.ppid).comm, "cryo")
        var sb = stat()
        XCTAssertEqual(stat(b.slave, &sb), 0)
        XCTAssertEqual(UInt64(st.ttyNr), UInt64(sb.st_rdev), "the job's controlling terminal is not cryo's")
        kill(pid, SIGTERM)
    }
}
