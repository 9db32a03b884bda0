import Foundation
import Glibc
import XCTest
import ZDTMCore

/// A signal sent to the tree while it is frozen is queued; the dump must carry it into the
/// images even when it arrives after the task's state was read (while the pages are copied).
final class SignalsDuringDumpTests: XCTestCase {
    static let target = """
        import os, signal, time
        rt = signal.SIGRTMIN + 1
        signal.pthread_sigmask(signal.SIG_BLOCK, [rt])
        big = bytearray(b'\\x01') * (192 << 20)  # pages to copy: the signals land meanwhile
        open("ready", "w").write("1")
        while not os.path.exists("go"):
            time.sleep(0.02)
        n = 0
        while signal.sigtimedwait([rt], 0) is not None:
            n += 1
        open("count.tmp", "w").write(str(n))
        os.rename("count.tmp", "count")
        time.sleep(30)
        """

    func testSignalsQueuedWhilePagesAreCopiedComeBack() throws {
        let h = try CRHarness.make("SignalsDuringDumpTests")
        defer { h.remove() }
        guard access("/usr/bin/python3", X_OK) == 0 else {
            print("SignalsDuringDumpTests: skipped, needs python3")
            throw XCTSkip("no python3")
        }
        let work = h.dir + "/sig"
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let pid = try Subprocess.spawn("/usr/bin/python3", ["-c", Self.target], cwd: work, output: work + "/out.log")
        var restored: Int32 = 0
        defer {
            kill(pid, SIGKILL); _ = try? Subprocess.wait(pid, timeout: 5)
            if restored > 0 { kill(restored, SIGKILL); _ = try? Subprocess.wait(restored, timeout: 5) }
        }
        XCTAssertTrue(CRHarness.waitFor(work + "/ready", seconds: 60), "the target did not start")

        // Sends once the dump has read every task's state and copies the pages (its log says so).
        let want = 12
        let images = work + "/img"
        final class Count: @unchecked Sendable { var n = 0 }
        let count = Count()
        let sender = Thread {
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let s = try? String(contentsOfFile: images + "/dump.log", encoding: .utf8), s.contains("finishing the copy of their pages") { break }
                usleep(200)
            }
            for i in 0..<want {
                // SIGRTMIN + 1 as glibc (and Python) number it: 34 + 1.
                if sigqueue(pid, 35, sigval(sival_int: Int32(i))) == 0 { count.n += 1 }
            }
        }
        sender.start()
        let (dumpCode, dumpOut) = try h.cryo(["dump", "-t", "\(pid)", "-D", images, "-v4", "-o", "dump.log"])
        while !sender.isFinished { usleep(1000) }
        let sent = count.n
        XCTAssertEqual(dumpCode, 0, dumpOut)
        XCTAssertEqual(sent, want, "the sender could not queue every signal while the tree was frozen")
        _ = try Subprocess.wait(pid, timeout: 10)

        let (code, out) = try h.cryo(["restore", "-D", images, "-d", "--pidfile", work + "/restored.pid"])
        XCTAssertEqual(code, 0, out)
        restored = Int32((try? String(contentsOfFile: work + "/restored.pid", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
        XCTAssertEqual(restored, pid)
        FileManager.default.createFile(atPath: work + "/go", contents: Data())
        XCTAssertTrue(CRHarness.waitFor(work + "/count", seconds: 30), "the restored target did not answer")
        let got = Int((try? String(contentsOfFile: work + "/count", encoding: .utf8)) ?? "") ?? -1
        XCTAssertEqual(got, sent, "signals queued while the tree was frozen: \(sent) sent, \(got) came back")
    }
}
