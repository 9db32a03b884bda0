import Foundation
import Glibc
import XCTest
import ZDTMCore

/// A tmux server (a private socket, never the user's) is dumped and restored: its pane's
/// counter carries on, output a third pane wrote while the server was stopped (not read, not
/// drawn) is drawn once it runs again, and keys sent to a second pane after the restore reach
/// the program in it through the restored pty and come back on its screen.
final class TmuxTests: XCTestCase {
    func tmux(_ h: CRHarness, _ sock: String, _ args: [String]) throws -> (Int32, String) {
        let log = h.dir + "/tmux-\(UUID().uuidString).log"
        let st = try Subprocess.run("/usr/bin/tmux", ["-S", sock, "-f", "/dev/null"] + args, log: log, timeout: 20)
        return (Subprocess.exitCode(st), (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// The highest counter line ("nN") the pane shows.
    func counter(_ h: CRHarness, _ sock: String) throws -> Int? {
        try tmux(h, sock, ["capture-pane", "-p", "-t", "%0"]).1.split(whereSeparator: \.isNewline).compactMap { $0.hasPrefix("n") ? Int($0.dropFirst()) : nil }.max()
    }

    /// `pid` and its descendants: after the dump kills them, we (their subreaper) reap them all.
    func tree(_ pid: Int32) -> [Int32] {
        let kids = ((try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? "").split(separator: " ").compactMap { Int32($0) }
        return [pid] + kids.flatMap { tree($0) }
    }

    func waitFor(_ what: () throws -> Bool) rethrows -> Bool {
        for _ in 0..<250 { if try what() { return true }; usleep(20_000) }
        return false
    }

    func testTmuxServerComesBackAndItsPanesCarryOn() throws {
        guard access("/usr/bin/tmux", X_OK) == 0 else {
            print("TmuxTests: skipped, no /usr/bin/tmux (ci/deps.sh installs it)")
            throw XCTSkip("no tmux")
        }
        let h = try CRHarness.make("TmuxTests")
        defer { h.remove() }
        let sock = h.dir + "/tmux.sock"
        let (nc, nout) = try tmux(h, sock, ["new-session", "-d", "-x", "100", "-y", "30", "sh -c 'i=0; while :; do echo n$i; i=$((i+1)); sleep 0.1; done'"])
        XCTAssertEqual(nc, 0, nout)
        defer { _ = try? tmux(h, sock, ["kill-server"]) }
        XCTAssertEqual(try tmux(h, sock, ["split-window", "-d", "cat"]).0, 0)
        let go = h.dir + "/go", printed = h.dir + "/printed"
        XCTAssertEqual(try tmux(h, sock, ["split-window", "-d", "sh -c 'while [ ! -e \(go) ]; do sleep 0.05; done; echo not-drawn-before-the-dump; touch \(printed); exec cat'"]).0, 0)
        let server = try XCTUnwrap(Int32(try tmux(h, sock, ["display", "-p", "#{pid}"]).1.trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertTrue(try waitFor { (try counter(h, sock) ?? 0) > 5 }, "the pane's counter never ran")
        // The server stopped, the third pane prints: its line waits in the pty, unread.
        XCTAssertEqual(kill(server, SIGSTOP), 0)
        FileManager.default.createFile(atPath: go, contents: nil)
        XCTAssertTrue(waitFor { access(printed, F_OK) == 0 }, "the third pane never printed")
        usleep(100_000)  // its `touch` gone, cat in its place

        let images = h.dir + "/img"
        let dumped = tree(server)
        // Output tmux has not read (the third pane's line, the counter's latest) is dumped with it.
        let (dc, dout) = try h.cryo(["dump", "-t", "\(server)", "-D", images, "-v4", "-o", h.dir + "/dump.log"])
        guard dc == 0 else { kill(server, SIGKILL); return XCTFail("dump exited \(dc): \(dout.suffix(800))") }
        h.waitGone(dumped)
        // The counter's `sleep` of the moment may have started after `dumped` was read: every
        // zombie of ours goes, or restore meets its pid.
        var st: Int32 = 0
        for _ in 0..<50 { while waitpid(-1, &st, WNOHANG) > 0 {}; usleep(10_000) }
        XCTAssertNil(try counter(h, sock), "tmux still answers after the dump killed its server")
        XCTAssertTrue(FileManager.default.fileExists(atPath: images + "/tty-info.img"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: images + "/tty-data.img"), "no data in flight dumped")

        let (rc, rout) = try h.cryo(["restore", "-D", images, "-d", "-v4", "-o", h.dir + "/restore.log"])
        guard rc == 0 else { return XCTFail("restore exited \(rc): \(rout.suffix(800))") }
        // Restored stopped, as it was dumped.
        XCTAssertEqual(kill(server, SIGCONT), 0)
        XCTAssertTrue(try waitFor { try tmux(h, sock, ["capture-pane", "-p", "-t", "%2"]).1.contains("not-drawn-before-the-dump") },
                      "output queued at the dump was not drawn after the restore: \((try? tmux(h, sock, ["capture-pane", "-p", "-t", "%2"]).1) ?? "")")
        var last = 0
        XCTAssertTrue(try waitFor { last = try counter(h, sock) ?? 0; return last > 20 }, "the counter did not carry on after the restore (last n\(last))")
        let later = last
        XCTAssertTrue(try waitFor { (try counter(h, sock) ?? 0) > later + 5 }, "the counter stopped after n\(later)")

        XCTAssertEqual(try tmux(h, sock, ["send-keys", "-t", "%1", "typed-after-restore", "Enter"]).0, 0)
        XCTAssertTrue(try waitFor {
            // Echoed by the pty, then written back by cat: twice.
            try tmux(h, sock, ["capture-pane", "-p", "-t", "%1"]).1.components(separatedBy: "typed-after-restore").count - 1 >= 2
        }, "keys sent after the restore did not come back through cat: \((try? tmux(h, sock, ["capture-pane", "-p", "-t", "%1"]).1) ?? "")")
        let restored = tree(server)
        XCTAssertEqual(try tmux(h, sock, ["kill-server"]).0, 0)
        h.waitGone(restored)
    }
}
