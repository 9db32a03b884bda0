import Foundation
import XCTest
import Engine
import ZDTMCore

/// Runs the smoke suite through the built `zdtm`, as CI does.
final class SmokeSuiteTests: XCTestCase {
    var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// The build folder of this test bundle (.build/debug or .build/release): zdtm and the
    /// workloads are built next to it.
    func buildDir() -> String? {
        var candidates = [Locations.selfDir(), (Bundle.main.bundlePath as NSString).deletingLastPathComponent, Bundle.main.bundlePath]
        candidates += Bundle.allBundles.map { ($0.bundlePath as NSString).deletingLastPathComponent }
        for d in candidates where FileManager.default.isExecutableFile(atPath: d + "/zdtm") { return d }
        XCTFail("no zdtm binary next to the test bundle (looked in \(candidates.joined(separator: ", "))); run `swift build` first")
        return nil
    }

    func testSmokeSuiteNoCR() throws { try runSmoke(mode: "nocr", iters: 1) }

    /// Real checkpoint/restore cycles: every smoke workload dumped and restored three times.
    func testSmokeSuitePlain() throws { try runSmoke(mode: "plain", iters: 3) }

    /// Two pre-dumps while each workload runs, an incremental final dump, restore through the chain.
    func testSmokeSuitePre() throws { try runSmoke(mode: "pre", iters: 2) }

    /// Two snapshot dumps with --leave-running, an incremental final dump, restore from the last.
    func testSmokeSuiteSnaps() throws { try runSmoke(mode: "snaps", iters: 2) }

    /// Two pre-dumps and the final dump through cryo page-server in its own netns over a veth.
    func testSmokeSuitePageServer() throws { try runSmoke(mode: "page-server", iters: 1) }

    /// Restore with --lazy-pages: private anonymous memory comes through userfaultfd from cryo lazy-pages.
    func testSmokeSuiteLazy() throws { try runSmoke(mode: "lazy", iters: 1) }

    /// make-lazy images, the pages served on demand by cryo page-server --lazy-pages across a veth pair.
    func testSmokeSuiteRemoteLazy() throws { try runSmoke(mode: "remote-lazy", iters: 1) }

    /// The final dump as one stream through a pipe into cryo restore --stream-from (images in memory).
    func testSmokeSuiteStream() throws { try runSmoke(mode: "stream", iters: 1) }

    /// Two pre-dumps and the final dump through cryo image-proxy to cryo image-cache (two netns
    /// over a veth), restore --remote from the cache: no image on disk.
    func testSmokeSuiteRemote() throws { try runSmoke(mode: "", iters: 1, args: ["--suite", "smoke", "--remote", "--pre", "2"]) }

    /// The smoke suite in the ns flavour: each workload under an init in new pid, mount, net,
    /// uts and ipc namespaces (docs/NAMESPACES.md); workloads flagged host-only are left out.
    /// (ns in pre and snaps passes too, but costs 4 more minutes than the test command's budget
    /// allows: `zdtm run --suite smoke -f ns --mode pre --mode snaps -p 2`.)
    func testSmokeSuiteNsPlain() throws { try runSmokeNs(modes: ["plain"]) }

    /// The ns flavour through stream and remote, each after pre-dumps and after snapshots, on
    /// workloads with threads, a child, pipes, unix and TCP sockets: the restored init has a new
    /// pid outside and pid 1 inside. (The whole suite: `zdtm run --suite smoke -f h,ns --mode
    /// stream --mode remote --pre 2 -p 2`, and again with --snaps; docs/STREAM.md.)
    func testNsStreamRemoteIncremental() throws {
        let ws = ["env00", "thread00", "pipe00", "unix00", "tcp00", "zombie00"].flatMap { ["-t", $0] }
        for steps in [["--pre", "2"], ["--snaps", "--pre", "1"]] {
            try runSmoke(mode: "", iters: 1, args: ws + ["-f", "ns", "--mode", "stream", "--mode", "remote"] + steps, cases: 12)
        }
    }

    /// The smoke suite in the uns flavour: as ns, under an init in a new user namespace too
    /// (maps 0 100000 65536); workloads flagged not for uns are left out.
    func testSmokeSuiteUnsPlain() throws { try runSmokeNs(modes: ["plain"], flavour: "uns") }

    func runSmokeNs(modes: [String], flavour: String = "ns") throws {
        let cat = try Catalogue(directory: packageRoot + "/Suites")
        let n = try cat.suite("smoke").workloads.filter { cat.workloads[$0]?.allows(flavour: flavour) ?? true }.count
        try runSmoke(mode: "", iters: 1, args: ["--suite", "smoke", "-f", flavour] + modes.flatMap { ["--mode", $0] }, cases: n * modes.count)
    }

    /// Every fault point on three workloads: a failed dump leaves the tree running (then C/R
    /// passes), a failed restore leaves no process (then a second restore passes).
    func testFaultPoints() throws {
        let faults = FaultPoint.allCases.flatMap { ["--fault", String($0.rawValue)] }
        try runSmoke(mode: "", iters: 1, args: ["-t", "pipe00", "-t", "tree00", "-t", "unix03"] + faults,
                     cases: 3 * FaultPoint.allCases.count)
    }

    func runSmoke(mode: String, iters: Int, args: [String]? = nil, cases: Int? = nil) throws {
        guard getuid() == 0 else {
            print("SmokeSuiteTests: skipped, zdtm needs root to trace and reap workloads")
            throw XCTSkip("zdtm needs root")
        }
        guard let dir = buildDir() else { return }
        let cat = try Catalogue(directory: packageRoot + "/Suites")
        let missing = try cat.suite("smoke").workloads.filter { name in
            !FileManager.default.isExecutableFile(atPath: cat.workloads[name]?.externalPath ?? (dir + "/" + name))
        }
        XCTAssertEqual(missing, [], "workload binaries missing from \(dir): \(missing.joined(separator: ", ")); run `swift build` (builds every product)")
        guard missing.isEmpty else { return }

        let p = Process()
        p.executableURL = URL(fileURLWithPath: dir + "/zdtm")
        p.arguments = ["run"] + (args ?? ["--suite", "smoke", "--mode", mode]) + ["--iters", String(iters), "--keep-going", "-p", "2", "--suites-dir", packageRoot + "/Suites", "--bin-dir", dir]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        print(out)
        // The assertion names the failing cases and why, not the whole run: CI shows only a part.
        let failing = out.split(separator: "\n").filter { $0.contains("  FAIL  ") }.joined(separator: "\n")
        XCTAssertEqual(p.terminationStatus, 0, failing.isEmpty ? String(out.suffix(4000)) : failing)
        let last = out.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(last.hasSuffix(" 0 failed") || last.contains(" 0 failed,"), "last line: \(last)")
        // By default the host flavour: workloads flagged for namespaces only are skipped there.
        let hostCases = cat.suites["smoke"]!.workloads.filter { cat.workloads[$0]?.allows(flavour: "h") ?? true }.count
        XCTAssertTrue(last.hasPrefix("\(cases ?? hostCases) passed"), "last line: \(last)")
    }
}
