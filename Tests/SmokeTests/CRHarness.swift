import CKernel
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// Starts workloads and runs cryo for tests that drive checkpoint/restore by hand.
struct CRHarness {
    let dir: String
    var bin: String { Locations.selfDir() }

    /// Makes a run directory and makes us the subreaper of what we start; nil without root.
    static func make(_ test: String) throws -> CRHarness {
        guard getuid() == 0 else {
            print("\(test): skipped, dump and restore need root")
            throw XCTSkip("needs root")
        }
        _ = ck_prctl(36, 1, 0, 0, 0)  // PR_SET_CHILD_SUBREAPER
        return CRHarness(dir: try Locations.makeRunDir())
    }

    /// `netns`: started in that `ip netns` network namespace (nsenter --net), the rest the host's.
    func start(_ name: String, args: [String] = [], netns: String? = nil) throws -> Int32 {
        let work = dir + "/" + name
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        let argv = [bin + "/" + name, "--pidfile=\(work)/pid", "--outfile=\(work)/out"] + args
        let cmd = netns.map { ["/usr/bin/nsenter", "--net=/run/netns/" + $0] + argv } ?? argv
        let starter = try Subprocess.spawn(cmd[0], Array(cmd.dropFirst()), cwd: work, output: work + "/start.log")
        _ = try Subprocess.wait(starter, timeout: 30)
        return try XCTUnwrap(Int32((try String(contentsOfFile: work + "/pid", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    func cryo(_ args: [String], passFd: Int32? = nil, timeout: Double = 120) throws -> (Int32, String) {
        let log = dir + "/cryo-\(UUID().uuidString).log"
        let st = try Subprocess.run(bin + "/cryo", args, log: log, timeout: timeout, passFd: passFd)
        return (Subprocess.exitCode(st), (try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
    }

    /// Whether `path` exists within `seconds`.
    static func waitFor(_ path: String, seconds: Double) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if access(path, F_OK) == 0 { return true }
            usleep(20_000)
        }
        return false
    }

    /// Runs `path args` to the end: exit status and stdout+stderr together.
    static func capture(_ path: String, _ args: [String]) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// SIGTERM, wait, and the workload's verdict line.
    func stop(_ pid: Int32, name: String) throws -> String {
        kill(pid, SIGTERM)
        _ = try Subprocess.wait(pid, timeout: 30)
        return ((try? String(contentsOfFile: dir + "/" + name + "/out", encoding: .utf8)) ?? "no verdict").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Waits until the pids are gone and reaped (we are their subreaper).
    func waitGone(_ pids: [Int32]) {
        for p in pids {
            for _ in 0..<5000 where kill(p, 0) == 0 {
                var st: Int32 = 0
                _ = waitpid(p, &st, WNOHANG)
                usleep(1000)
            }
        }
    }

    /// Bytes in the images directory's pages files.
    func pagesBytes(_ images: String) throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: images).filter { $0.hasPrefix("pages-") }.reduce(0) {
            $0 + ((try FileManager.default.attributesOfItem(atPath: images + "/" + $1)[.size] as? Int) ?? 0)
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}
