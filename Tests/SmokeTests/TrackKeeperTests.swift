import CKernel
import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// Incremental dumps typed as CRIU users type them, with no fd to pass: cryo's keeper holds the
/// tracking between runs. Each test has its own keeper (CRYO_TRACK_KEEPER) so zdtm's shared
/// one and the other tests never meet it.
final class TrackKeeperTests: XCTestCase {
    var h: CRHarness!
    var keeperName = ""
    var keeperPids: [Int32] = []
    nonisolated(unsafe) static var counter = 0

    override func setUpWithError() throws {
        h = try CRHarness.make("TrackKeeperTests")
        TrackKeeperTests.counter += 1
        keeperName = "cryo-test-keeper.\(getpid()).\(TrackKeeperTests.counter)"
        setenv("CRYO_TRACK_KEEPER", keeperName, 1)
        setenv("CRYO_TRACK_KEEPER_LOG", h.dir + "/keeper.log", 1)
        unsetenv("CRYO_TRACK_IDLE")
    }

    override func tearDown() {
        unsetenv("CRYO_TRACK_KEEPER"); unsetenv("CRYO_TRACK_KEEPER_LOG"); unsetenv("CRYO_TRACK_IDLE")
        for p in keeperPids where kill(p, 0) == 0 { kill(p, SIGKILL); _ = try? Subprocess.wait(p, timeout: 5) }
        h?.remove()
    }

    var keeperLog: String { (try? String(contentsOfFile: h.dir + "/keeper.log", encoding: .utf8)) ?? "" }

    func listing() throws -> TrackKeeperClient.Listing? {
        guard let c = try TrackKeeperClient.connect(name: keeperName) else { return nil }
        let l = try c.list()
        if !keeperPids.contains(l.keeperPid) { keeperPids.append(l.keeperPid) }
        return l
    }

    /// Until the keeper has exited and nothing answers on its name (we are its subreaper: reap it).
    func keeperGone(_ pid: Int32, within seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var st: Int32 = 0
            _ = waitpid(pid, &st, WNOHANG)
            if kill(pid, 0) != 0, case .some(.none) = try? TrackKeeperClient.connect(name: keeperName) { return true }
            usleep(20_000)
        }
        return false
    }

    func rewrite(_ pid: Int32, _ work: String) {
        let file = work + "/rewrite.times"
        let before = ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").count
        kill(pid, SIGUSR1)
        for _ in 0..<30_000 {
            if ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n").count > before { return }
            usleep(1000)
        }
        XCTFail("the workload did not rewrite its pages")
    }

    func assertNoUffd(_ pid: Int32, file: StaticString = #filePath, line: UInt = #line) throws {
        let proc = ProcReader()
        for fd in try proc.fds(pid: pid) {
            XCTAssertFalse((try? proc.fdTarget(pid: pid, fd: fd))?.contains("userfaultfd") ?? false, "fd \(fd) of \(pid)", file: file, line: line)
        }
    }

    /// The issue's three commands on 256 MiB that rewrite 1% of their pages between runs: the
    /// final dump holds at most 2% of the memory, it takes the tracking, and the keeper leaves.
    func testPlainCLIChainIsIncrementalAndTheFinalDumpTakesTheTracking() throws {
        let mib = 256
        let pid = try h.start("memhog00", args: ["\(mib)", "10"])
        let work = h.dir + "/memhog00"
        var (code, out) = try h.cryo(["pre-dump", "-t", "\(pid)", "-D", h.dir + "/pre1"])
        XCTAssertEqual(code, 0, out)
        let l = try XCTUnwrap(try listing(), "a keeper runs after the first pre-dump")
        XCTAssertEqual(l.tracked.map(\.pid), [pid])
        XCTAssertEqual(l.uid, 0)
        XCTAssertGreaterThanOrEqual(l.tracked[0].armedPages, UInt64(mib << 8))
        (code, out) = try h.cryo(["track"])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("1 process(es) tracked") && out.contains("\n\(pid) "), out)
        (code, out) = try h.cryo(["check"])
        XCTAssertTrue(out.contains("tracking keeper") && out.contains("\(pid) ("), out)
        try assertNoUffd(pid)

        rewrite(pid, work)
        (code, out) = try h.cryo(["pre-dump", "-t", "\(pid)", "-D", h.dir + "/pre2", "--prev-images-dir", "../pre1"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try listing()?.keeperPid, l.keeperPid, "one keeper for the chain")
        rewrite(pid, work)
        (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", h.dir + "/final", "--track-mem", "--prev-images-dir", "../pre2"])
        XCTAssertEqual(code, 0, out)

        let full = try h.pagesBytes(h.dir + "/pre1"), pre2 = try h.pagesBytes(h.dir + "/pre2"), final = try h.pagesBytes(h.dir + "/final")
        let ratio = Double(final) / Double(mib << 20)
        print("keeper chain: pre1 \(full) bytes, pre2 \(pre2) bytes, final \(final) bytes = \(String(format: "%.4f", ratio)) of \(mib) MiB")
        XCTAssertGreaterThanOrEqual(full, mib << 20)
        XCTAssertLessThanOrEqual(ratio, 0.02)
        XCTAssertLessThanOrEqual(Double(pre2) / Double(mib << 20), 0.02)
        XCTAssertTrue(keeperGone(l.keeperPid, within: 10), "the final dump took the tracking; the keeper must exit. log:\n\(keeperLog)")
        XCTAssertTrue(keeperLog.contains("the last tracking was taken"), keeperLog)

        h.waitGone([pid])
        (code, out) = try h.cryo(["restore", "-D", h.dir + "/final", "-d"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    func testKeeperExitsWhenTheTargetExits() throws {
        let pid = try h.start("memhog00", args: ["8"])
        let (code, out) = try h.cryo(["pre-dump", "-t", "\(pid)", "-D", h.dir + "/pre1"])
        XCTAssertEqual(code, 0, out)
        let keeper = try XCTUnwrap(try listing()).keeperPid
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS", "the tracked process is unharmed")
        XCTAssertTrue(keeperGone(keeper, within: 10), "log:\n\(keeperLog)")
        XCTAssertTrue(keeperLog.contains("pid \(pid) exited") && keeperLog.contains("every tracked process exited"), keeperLog)
    }

    func testKeeperDropsTheTrackingAfterItsIdleTime() throws {
        setenv("CRYO_TRACK_IDLE", "2", 1)
        let pid = try h.start("memhog00", args: ["8"])
        var (code, out) = try h.cryo(["pre-dump", "-t", "\(pid)", "-D", h.dir + "/pre1"])
        XCTAssertEqual(code, 0, out)
        let l = try XCTUnwrap(try listing())
        XCTAssertEqual(l.idleSeconds, 2)
        XCTAssertTrue(keeperGone(l.keeperPid, within: 15), "log:\n\(keeperLog)")
        XCTAssertTrue(keeperLog.contains("idle for 2 s"), keeperLog)
        XCTAssertEqual(kill(pid, 0), 0, "the target keeps running")
        // The tracking is gone: the next snapshot is a full one, and still a correct chain.
        (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-D", h.dir + "/final", "--track-mem", "--prev-images-dir", "../pre1"])
        XCTAssertEqual(code, 0, out)
        XCTAssertGreaterThanOrEqual(try h.pagesBytes(h.dir + "/final"), 8 << 20)
        h.waitGone([pid])
        (code, out) = try h.cryo(["restore", "-D", h.dir + "/final", "-d"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// SO_PEERCRED: a client of another uid (a forked child that setuid()s) gets a closed
    /// connection and no answer; root does, and the keeper keeps serving.
    func testOnlyRootAndTheKeepersUserReachIt() throws {
        let pid = try h.start("memhog00", args: ["8"])
        var (code, out) = try h.cryo(["pre-dump", "-t", "\(pid)", "-D", h.dir + "/pre1"])
        XCTAssertEqual(code, 0, out)
        let keeper = try XCTUnwrap(try listing()).keeperPid
        var req: [UInt8] = []
        req.append(contentsOf: withUnsafeBytes(of: UInt64(0x3150_4545_4b4f_5952).littleEndian, Array.init))  // "RYOKEEP1"
        req.append(contentsOf: withUnsafeBytes(of: UInt32(3).littleEndian, Array.init))  // list
        req.append(contentsOf: [0, 0, 0, 0])
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(keeperName.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, c) in bytes.enumerated() { p[1 + i] = c } }
        let len = UInt32(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        func ask(asUid uid: UInt32) -> Int32 {
            withUnsafeBytes(of: &addr) { a in req.withUnsafeBytes { r in
                ck_seqpacket_request_as(uid, uid, a.baseAddress, len, r.baseAddress, UInt(r.count))
            } }
        }
        XCTAssertEqual(ask(asUid: 65534), 1, "uid 65534 must get a closed connection and no reply")
        XCTAssertEqual(ask(asUid: 4242), 1, "uid 4242 must get a closed connection and no reply")
        XCTAssertEqual(ask(asUid: 0), 0, "root gets a reply")
        XCTAssertTrue(keeperLog.contains("refused a connection") && keeperLog.contains("uid 65534"), keeperLog)
        (code, out) = try h.cryo(["track"])
        XCTAssertTrue(out.contains("pid \(keeper)") && out.contains("\n\(pid) "), "the keeper still serves root: \(out)")
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
        XCTAssertTrue(keeperGone(keeper, within: 10))
    }

    /// A keeper started by another user (uid 65534, through setpriv) serves that user and root
    /// only; and cryo running as root hands it nothing: anyone can bind an abstract name first.
    func testAKeeperOfAnotherUserServesItsUserAndCryoDoesNotTrustIt() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("testAKeeperOfAnotherUserServesItsUserAndCryoDoesNotTrustIt: skipped, no /usr/bin/setpriv to run cryo as uid 65534")
            throw XCTSkip("no setpriv")
        }
        let log = h.dir + "/nobody-keeper.log"
        let keeper = try Subprocess.spawn("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", h.bin + "/cryo",
                                                             "track", "keeper", "--name", keeperName, "--idle", "30", "-v4"], output: log)
        keeperPids.append(keeper)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(keeperName.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, c) in bytes.enumerated() { p[1 + i] = c } }
        let len = UInt32(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
        var req: [UInt8] = []
        req.append(contentsOf: withUnsafeBytes(of: UInt64(0x3150_4545_4b4f_5952).littleEndian, Array.init))
        req.append(contentsOf: withUnsafeBytes(of: UInt32(3).littleEndian, Array.init))
        req.append(contentsOf: [0, 0, 0, 0])
        func ask(asUid uid: UInt32) -> Int32 {
            withUnsafeBytes(of: &addr) { a in req.withUnsafeBytes { r in
                ck_seqpacket_request_as(uid, uid, a.baseAddress, len, r.baseAddress, UInt(r.count))
            } }
        }
        var ready = false
        for _ in 0..<250 where !ready { ready = ask(asUid: 65534) == 0; if !ready { usleep(20_000) } }
        XCTAssertTrue(ready, "uid 65534 reaches its own keeper: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        XCTAssertTrue(((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("uid 65534: serving"))
        XCTAssertEqual(ask(asUid: 4242), 1, "uid 4242 does not")
        XCTAssertEqual(ask(asUid: 0), 0, "root does")
        XCTAssertThrowsError(try TrackKeeperClient.connect(name: keeperName)) { XCTAssertTrue("\($0)".contains("uid 65534"), "\($0)") }

        let pid = try h.start("memhog00", args: ["8"])
        let (code, out) = try h.cryo(["pre-dump", "-t", "\(pid)", "-D", h.dir + "/pre1"])
        XCTAssertEqual(code, 0, "an untrusted keeper costs a full snapshot, not the dump: \(out)")
        XCTAssertTrue(out.contains("runs as uid 65534, neither root nor us"), out)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        XCTAssertFalse(text.contains("keeping its tracking"), "root's userfaultfd went to uid 65534's keeper: \(text)")
        XCTAssertTrue(text.contains("refused a connection") && text.contains("uid 4242"), text)
        try assertNoUffd(pid)
        XCTAssertEqual(try h.stop(pid, name: "memhog00"), "PASS")
    }

    /// zdtm runs cases in parallel through one keeper: concurrent runs, one parcel per process,
    /// never mixed; the keeper stays while any chain is open.
    func testConcurrentChainsShareOneKeeper() throws {
        let a = try h.start("memhog00", args: ["8"])
        let work2 = h.dir + "/second"
        try FileManager.default.createDirectory(atPath: work2, withIntermediateDirectories: true)
        let starter = try Subprocess.spawn(h.bin + "/memhog00", ["--pidfile=\(work2)/pid", "--outfile=\(work2)/out", "8"], cwd: work2, output: work2 + "/start.log")
        _ = try Subprocess.wait(starter, timeout: 30)
        let b = try XCTUnwrap(Int32((try String(contentsOfFile: work2 + "/pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
        for round in 1...3 {
            let runs = try [a, b].map { p -> Int32 in
                var args = ["pre-dump", "-t", "\(p)", "-D", h.dir + "/\(p)-pre\(round)"]
                if round > 1 { args += ["--prev-images-dir", "../\(p)-pre\(round - 1)"] }
                return try Subprocess.spawn(h.bin + "/cryo", args, output: h.dir + "/\(p)-pre\(round).log")
            }
            for r in runs { XCTAssertEqual(try Subprocess.wait(r, timeout: 120).map(Subprocess.exitCode), 0) }
        }
        let l = try XCTUnwrap(try listing())
        XCTAssertEqual(l.tracked.map(\.pid).sorted(), [a, b].sorted())
        for p in [a, b] { XCTAssertLessThan(try h.pagesBytes(h.dir + "/\(p)-pre3"), 1 << 20, "pid \(p): later pre-dumps are incremental") }
        var (code, out) = try h.cryo(["dump", "-t", "\(a)", "-D", h.dir + "/a-final", "--track-mem", "--prev-images-dir", "../\(a)-pre3"])
        XCTAssertEqual(code, 0, out)
        XCTAssertEqual(try listing()?.tracked.map(\.pid), [b], "the other chain's tracking stays")
        (code, out) = try h.cryo(["dump", "-t", "\(b)", "-D", h.dir + "/b-final", "--track-mem", "--prev-images-dir", "../\(b)-pre3"])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(keeperGone(l.keeperPid, within: 10), keeperLog)
        h.waitGone([a, b])
        for (p, d) in [(a, "a-final"), (b, "b-final")] {
            (code, out) = try h.cryo(["restore", "-D", h.dir + "/" + d, "-d"])
            XCTAssertEqual(code, 0, "pid \(p): \(out)")
        }
        XCTAssertEqual(try h.stop(a, name: "memhog00"), "PASS")
        kill(b, SIGTERM)
        _ = try Subprocess.wait(b, timeout: 30)
        XCTAssertEqual(((try? String(contentsOfFile: work2 + "/out", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines), "PASS")
    }
}
