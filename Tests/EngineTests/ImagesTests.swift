import XCTest
import Glibc
import CKernel
@testable import Engine

final class ImagesTests: XCTestCase {
    var dir: String = ""

    override func setUpWithError() throws {
        var t = Array("/tmp/cryo-img-test-XXXXXX".utf8CString)
        dir = String(cString: mkdtemp(&t)!)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func writeSample(_ d: ImageDirectory, pid: UInt32 = 4242, pages: Int = 3) throws {
        try ImageSamples.write(d, pid: pid, pages: pages)
    }

    func testRoundTripOfEveryKind() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        XCTAssertEqual(try d.readOne(.inventory, as: Img_InventoryEntry.self).imgVersion, 2)
        XCTAssertEqual(try d.read(.pstree, as: Img_PstreeEntry.self).first?.threads, [4242])
        let core = try d.readOne(.core, id: 4242, as: Img_CoreEntry.self)
        XCTAssertEqual(core.threadInfo.gpregs.ax, UInt64(bitPattern: -516))
        XCTAssertEqual(core.threadInfo.fpregs.xsave.xsaveArea.count, 11008)
        XCTAssertEqual(core.threadInfo.fpregs.xsave.xtilecfg, Data(repeating: 1, count: 64))
        XCTAssertEqual(core.tc.rlimits.rlimits.count, 16)
        XCTAssertEqual(core.tc.umask, 0o22)
        XCTAssertEqual(core.threadCore.rseqEntry.signature, 0x53053053)
        XCTAssertEqual(try d.readOne(.ids, id: 4242, as: Img_TaskKobjIdsEntry.self).sighandID, 4)
        XCTAssertEqual(try d.readOne(.mm, id: 4242, as: Img_MmEntry.self).vmas.first?.end, 0x7f00_0000_4000)
        let pm = try d.readPagemap(pid: 4242)
        XCTAssertEqual(pm.pagesID, 1)
        XCTAssertEqual(pm.entries.first?.nrPages, 3)
        XCTAssertEqual(try d.read(.files, as: Img_FileEntry.self).first?.reg.name, "/tmp/some file")
        XCTAssertEqual(try d.read(.fdinfo, id: 2, as: Img_FdinfoEntry.self).first?.fd, 3)
        XCTAssertEqual(try d.readOne(.fs, id: 4242, as: Img_FsEntry.self).umask, 0o22)
        XCTAssertEqual(try d.read(.sigacts, id: 4242, as: Img_SaEntry.self).count, 2)
        XCTAssertNoThrow(try d.validateConsistency())
    }

    func testHeaderBytesMatchCRIU() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        let inv = try d.readBytes(d.filePath(.inventory))
        XCTAssertEqual(Array(inv.prefix(4)), [0x16, 0x31, 0x31, 0x58], "inventory starts with its own magic only")
        let core = try d.readBytes(d.filePath(.core, 4242))
        XCTAssertEqual(Array(core.prefix(8)), [0x19, 0x43, 0x56, 0x54, 0x47, 0x38, 0x05, 0x55])
    }

    // MARK: corruption

    func corrupt(_ file: String, _ edit: (inout [UInt8]) -> Void) throws {
        let d = try ImageDirectory(path: dir)
        var b = try d.readBytes(file)
        edit(&b)
        try d.writeBytes(file, b)
    }

    func testWrongMagic() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        let f = d.filePath(.core, 4242)
        try corrupt(f) { $0[4] ^= 0xff }
        XCTAssertThrowsError(try d.readOne(.core, id: 4242, as: Img_CoreEntry.self)) { e in
            guard case ImageError.badMagic(let file, let off, _, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, f); XCTAssertEqual(off, 4)
            XCTAssertTrue("\(e)".contains("core-4242.img") && "\(e)".contains("offset 4"))
        }
    }

    func testTruncatedFrame() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        let f = d.filePath(.mm, 4242)
        try corrupt(f) { $0.removeLast(5) }
        XCTAssertThrowsError(try d.readOne(.mm, id: 4242, as: Img_MmEntry.self)) { e in
            guard case ImageError.truncated(let file, let off, _, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, f); XCTAssertEqual(off, 12)
        }
        try corrupt(f) { $0 = Array($0.prefix(10)) }
        XCTAssertThrowsError(try d.readOne(.mm, id: 4242, as: Img_MmEntry.self)) { e in
            guard case ImageError.truncated(_, let off, 4, 2) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(off, 8)
        }
    }

    func testOversizedLength() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        try corrupt(d.filePath(.pstree)) { b in b[8] = 0xff; b[9] = 0xff; b[10] = 0xff; b[11] = 0x7f }
        XCTAssertThrowsError(try d.read(.pstree, as: Img_PstreeEntry.self)) { e in
            guard case ImageError.oversized(let file, 8, _, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, d.filePath(.pstree))
            XCTAssertTrue("\(e)".contains("pstree.img") && "\(e)".contains("offset 8"), "\(e)")
        }
    }

    func testMissingRequiredField() throws {
        let d = try ImageDirectory(path: dir)
        var ps = Img_PstreeEntry()
        ps.pid = 1  // ppid, pgid, sid missing
        var out = ImageCodec.header(.pstree)
        let bytes: [UInt8] = try ps.serializedBytes(partial: true)
        ImageCodec.appendU32(&out, UInt32(bytes.count)); out += bytes
        try d.writeBytes(d.filePath(.pstree), out)
        XCTAssertThrowsError(try d.read(.pstree, as: Img_PstreeEntry.self)) { e in
            guard case ImageError.missingRequired(let file, 8, let msg) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, d.filePath(.pstree))
            XCTAssertTrue(msg.contains("PstreeEntry"))
        }
    }

    func testGarbageDoesNotDecode() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        try corrupt(d.filePath(.fs, 4242)) { b in for i in 12..<b.count { b[i] = 0xff } }
        XCTAssertThrowsError(try d.readOne(.fs, id: 4242, as: Img_FsEntry.self)) { e in
            guard case ImageError.undecodable(let file, 8, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, d.filePath(.fs, 4242))
            XCTAssertTrue("\(e)".contains("fs-4242.img") && "\(e)".contains("offset 8"), "\(e)")
        }
    }

    func testRandomCorruptionNeverCrashes() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        let f = d.filePath(.core, 4242)
        let good = try d.readBytes(f)
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<300 {
            var b = good
            for _ in 0..<3 { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if Bool.random() { b = Array(b.prefix(Int.random(in: 0..<b.count))) }
            try d.writeBytes(f, b)
            _ = try? d.readOne(.core, id: 4242, as: Img_CoreEntry.self)
        }
    }

    func testInconsistentPagesCount() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d, pages: 3)
        let fd = open(d.filePath(.pages, 1), O_WRONLY | O_APPEND)
        _ = write(fd, "x", 1)
        close(fd)
        XCTAssertThrowsError(try d.validateConsistency()) { e in
            guard case ImageError.inconsistent(let file, _, let why) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(file.hasSuffix("pages-1.img"))
            XCTAssertTrue(why.contains("3 pages"))
        }
    }

    func testPstreeThreadsMustIncludePidAndHaveCores() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        var ps = Img_PstreeEntry(); ps.pid = 4242; ps.ppid = 0; ps.pgid = 4242; ps.sid = 4242; ps.threads = [4243]
        try d.write(.pstree, entry: ps)
        XCTAssertThrowsError(try d.validateConsistency()) { e in XCTAssertTrue("\(e)".contains("do not include the pid")) }
        ps.threads = [4242, 4243]
        try d.write(.pstree, entry: ps)
        XCTAssertThrowsError(try d.validateConsistency()) { e in
            XCTAssertEqual(e as? ImageError, .missing(file: d.filePath(.core, 4243)))
        }
    }

    func testPagemapOverlapRejected() throws {
        let d = try ImageDirectory(path: dir)
        var a = Img_PagemapEntry(); a.vaddr = 0x10000; a.nrPages = 4
        var b = Img_PagemapEntry(); b.vaddr = 0x12000; b.nrPages = 1
        try d.writePagemap(pid: 1, pagesID: 1, entries: [a, b])
        XCTAssertThrowsError(try d.readPagemap(pid: 1)) { e in XCTAssertTrue("\(e)".contains("overlaps")) }
        b.vaddr = 0x12001
        try d.writePagemap(pid: 1, pagesID: 1, entries: [b])
        XCTAssertThrowsError(try d.readPagemap(pid: 1)) { e in XCTAssertTrue("\(e)".contains("bad range")) }
    }

    func testParentChainLoopsAndDepth() throws {
        let a = try ImageDirectory(path: dir + "/a", create: true)
        let b = try ImageDirectory(path: dir + "/b", create: true)
        for d in [a, b] { try writeSample(d) }
        try b.setParent(relativePath: "../a")
        // Parents are named by their resolved path, so errors point at real files.
        XCTAssertEqual(try b.chain().map(\.path), [b.path, ImageDirectory.canonical(a.path)])
        try a.setParent(relativePath: "../b")
        XCTAssertThrowsError(try b.chain()) { e in XCTAssertTrue("\(e)".contains("loop")) }
        try a.setParent(relativePath: "../missing")
        XCTAssertThrowsError(try b.chain()) { e in XCTAssertTrue("\(e)".contains("not an images directory")) }
    }

    /// CRIU's own reader must decode what we write.
    func testCritDecodesOurImages() throws {
        guard access("/usr/bin/crit", X_OK) == 0 else {
            print("ImagesTests.testCritDecodesOurImages: skipped, /usr/bin/crit is not installed (Debian package criu)")
            throw XCTSkip("crit not installed")
        }
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        for f in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() where !f.hasPrefix("pages-") {
            let (code, out) = try run("/usr/bin/crit", ["decode", "-i", dir + "/" + f])
            XCTAssertEqual(code, 0, "crit decode \(f): \(out)")
        }
        let (code, out) = try run("/usr/bin/crit", ["decode", "-i", dir + "/core-4242.img", "--pretty"])
        XCTAssertEqual(code, 0)
        XCTAssertTrue(out.contains("\"comm\": \"worker\""), out)
        let (xc, xout) = try run("/usr/bin/crit", ["x", dir, "ps"])
        XCTAssertEqual(xc, 0, xout)
        XCTAssertTrue(xout.contains("4242"), xout)
    }

    func run(_ path: String, _ args: [String]) throws -> (Int32, String) {
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
}
