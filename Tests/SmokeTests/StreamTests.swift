import CKernel
import Engine
import Foundation
import Glibc
import XCTest
import ZDTMCore

/// Checkpoint streams through the real cryo: dump | restore through a pipe (plain and
/// compressed), and damaged streams (truncated, a corrupt frame, a hostile image name) that
/// the restore refuses by name, with no process and no file left behind.
final class StreamTests: XCTestCase {
    var h: CRHarness!
    override func setUpWithError() throws { h = try CRHarness.make("StreamTests") }
    override func tearDown() { h?.remove() }

    /// `cryo dump --stream-to 3 | cryo restore --stream-from 3`: the restore starts first on the
    /// read end, as the right side of a shell pipe does.
    func pipeThrough(_ name: String, args: [String], dumpExtra: [String], spliced: Bool = false) throws {
        let pid = try h.start(name, args: args)
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let rlog = h.dir + "/restore.log"
        let restore = try Subprocess.spawn(h.bin + "/cryo", ["restore", "--stream-from", "3", "-d", "--pidfile", h.dir + "/restored.pid", "-v4"],
                                           cwd: h.dir, output: rlog, passFd: p[0])
        close(p[0])
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "--stream-to", "3", "-v4"] + dumpExtra, passFd: p[1])
        close(p[1])
        XCTAssertEqual(code, 0, out)
        // The tree is killed and the stream is a pipe: its pages go out by reference.
        if spliced { XCTAssertTrue(out.contains("the task vmsplicing"), out) }
        h.waitGone([pid])
        let st = try XCTUnwrap(try Subprocess.wait(restore, timeout: 120))
        let rout = (try? String(contentsOfFile: rlog, encoding: .utf8)) ?? ""
        XCTAssertEqual(Subprocess.exitCode(st), 0, rout)
        XCTAssertTrue(rout.contains("stream read:"), rout)
        XCTAssertEqual(try String(contentsOfFile: h.dir + "/restored.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), "\(pid)")
        // No image landed on a disk: the run folder holds only logs and the pidfile.
        let imgs = try FileManager.default.contentsOfDirectory(atPath: h.dir).filter { $0.hasSuffix(".img") }
        XCTAssertEqual(imgs, [])
        XCTAssertEqual(try h.stop(pid, name: name), "PASS")
    }

    func testPipeDumpRestore() throws {
        try pipeThrough("bigheap00", args: [], dumpExtra: [], spliced: true)
    }

    func testCompressedPipeDumpRestore() throws {
        try pipeThrough("pipe00", args: [], dumpExtra: ["--compress"])
    }

    /// A stream file of a running workload (the dump leaves it running), damaged three ways.
    func damagedStream(_ damage: ([UInt8]) -> [UInt8], expect: String) throws {
        let pid = try h.start("sleeping00")
        defer { _ = try? h.stop(pid, name: "sleeping00") }
        let good = h.dir + "/good.cryo"
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-R", "--stream-to", good])
        XCTAssertEqual(code, 0, out)
        let bad = h.dir + "/bad.cryo"
        FileManager.default.createFile(atPath: bad, contents: Data(damage([UInt8](try Data(contentsOf: URL(fileURLWithPath: good))))))
        // h.cryo's own output logs (cryo-UUID.log) aside.
        func files() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: h.dir).filter { !$0.hasPrefix("cryo-") }.sorted() }
        let before = try files()
        let (rc, rout) = try h.cryo(["restore", "--stream-from", bad, "-D", h.dir, "-d", "--pidfile", h.dir + "/restored.pid"])
        XCTAssertEqual(rc, 1, rout)
        XCTAssertTrue(rout.contains(expect), rout)
        // Nothing made: no pidfile, no new file; the workload is the one that was running.
        XCTAssertEqual(try files(), before)
        XCTAssertEqual(kill(pid, 0), 0)
    }

    /// Cut inside a payload of the pages image, halfway through its frames: refused naming the
    /// image, nothing restored (the restore creates processes only after the commit frame).
    func testStreamCutInsideThePages() throws {
        let pid = try h.start("bigheap00")
        defer { _ = try? h.stop(pid, name: "bigheap00") }
        let good = h.dir + "/good.cryo"
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "-R", "--stream-to", good])
        XCTAssertEqual(code, 0, out)
        let b = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        var at = StreamFormat.streamHeaderSize
        var pageFrames: [(at: Int, name: String, stored: Int)] = []
        while at + StreamFormat.frameHeaderSize <= b.count {
            let nameLen = Int(b[at + 4]) | Int(b[at + 5]) << 8
            let stored = Int(b[at + 8]) | Int(b[at + 9]) << 8 | Int(b[at + 10]) << 16 | Int(b[at + 11]) << 24
            let name = String(decoding: b[(at + StreamFormat.frameHeaderSize)..<(at + StreamFormat.frameHeaderSize + nameLen)], as: UTF8.self)
            if b[at + 2] == StreamFormat.FrameType.data.rawValue && name.hasPrefix("pages-") { pageFrames.append((at, name, stored)) }
            at += StreamFormat.frameHeaderSize + nameLen + stored
        }
        XCTAssertGreaterThan(pageFrames.count, 2, "bigheap00's pages should span several frames")
        let mid = pageFrames[pageFrames.count / 2]
        let cut = mid.at + StreamFormat.frameHeaderSize + mid.name.utf8.count + mid.stored / 2
        let bad = h.dir + "/cut.cryo"
        FileManager.default.createFile(atPath: bad, contents: Data(b[0..<cut]))
        let (rc, rout) = try h.cryo(["restore", "--stream-from", bad, "-D", h.dir, "-d", "--pidfile", h.dir + "/restored.pid"])
        XCTAssertEqual(rc, 1, rout)
        XCTAssertTrue(rout.contains("stream truncated at byte"), rout)
        XCTAssertTrue(rout.contains("(image \(mid.name))"), rout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/restored.pid"))
        XCTAssertEqual(kill(pid, 0), 0)
    }

    func testTruncatedStream() throws {
        try damagedStream({ Array($0.prefix($0.count * 2 / 3)) }, expect: "stream truncated at byte")
    }

    func testCorruptFrame() throws {
        try damagedStream({ var b = $0; b[b.count / 2] ^= 0x40; return b }, expect: "stream corrupt at byte")
    }

    /// The first frame's name made "../x", CRC recomputed: refused for the name, not the CRC.
    func testHostileNameRefused() throws {
        try damagedStream({ b in
            var b = b
            let at = StreamFormat.streamHeaderSize
            let nameLen = Int(b[at + 4]) | Int(b[at + 5]) << 8
            let stored = Int(b[at + 8]) | Int(b[at + 9]) << 8 | Int(b[at + 10]) << 16 | Int(b[at + 11]) << 24
            let nameAt = at + StreamFormat.frameHeaderSize
            b[nameAt] = UInt8(ascii: "."); b[nameAt + 1] = UInt8(ascii: "."); b[nameAt + 2] = UInt8(ascii: "/")
            let crc = b[(nameAt + nameLen)..<(nameAt + nameLen + stored)].withUnsafeBytes { p in
                StreamFormat.crc(header: Array(b[at..<(at + 16)]), name: Array(b[nameAt..<(nameAt + nameLen)]), payload: p)
            }
            withUnsafeBytes(of: crc.littleEndian) { b.replaceSubrange((at + 16)..<(at + 20), with: $0) }
            return b
        }, expect: "refused (a name has no '/', '..' or NUL)")
    }

    /// A dump that fails after its pages went out spliced (by reference, the tree frozen) lets
    /// the tree run on, unharmed; the reader, which may then see pages the tree changed since,
    /// says the dump failed and restores nothing.
    func testDumpFailingAfterSplicedPages() throws {
        let pid = try h.start("dirty00")
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        for fd in p { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let rlog = h.dir + "/restore.log"
        let restore = try Subprocess.spawn(h.bin + "/cryo", ["restore", "--stream-from", "3", "-d", "--pidfile", h.dir + "/restored.pid"],
                                           cwd: h.dir, output: rlog, passFd: p[0])
        close(p[0])
        setenv(Fault.variable, "\(FaultPoint.afterFiles.rawValue)", 1)
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "--stream-to", "3", "-v4"], passFd: p[1])
        unsetenv(Fault.variable)
        close(p[1])
        XCTAssertEqual(code, 1, out)
        XCTAssertTrue(out.contains("the task vmsplicing"), out)
        XCTAssertTrue(out.contains("fault injected"), out)
        let st = try XCTUnwrap(try Subprocess.wait(restore, timeout: 120))
        let rout = (try? String(contentsOfFile: rlog, encoding: .utf8)) ?? ""
        XCTAssertEqual(Subprocess.exitCode(st), 1, rout)
        XCTAssertTrue(rout.contains("the dump failed"), rout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: h.dir + "/restored.pid"))
        XCTAssertEqual(kill(pid, 0), 0)
        XCTAssertEqual(try h.stop(pid, name: "dirty00"), "PASS")
    }

    /// A dump whose reader went away fails (EPIPE) and leaves the tree running.
    func testReaderGoneFailsDumpTreeRuns() throws {
        let pid = try h.start("bigheap00")
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        close(p[0])
        let (code, out) = try h.cryo(["dump", "-t", "\(pid)", "--stream-to", "3"], passFd: p[1])
        close(p[1])
        XCTAssertEqual(code, 1, out)
        XCTAssertTrue(out.contains("Broken pipe"), out)
        XCTAssertEqual(kill(pid, 0), 0)
        XCTAssertEqual(try h.stop(pid, name: "bigheap00"), "PASS")
    }
}
