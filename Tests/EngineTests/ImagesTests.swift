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

    /// A plausible one-process image set, as a dump would write it.
    func writeSample(_ d: ImageDirectory, pid: UInt32 = 4242, pages: Int = 3) throws {
        var inv = Img_InventoryEntry()
        inv.imgVersion = 2
        inv.fdinfoPerID = true
        inv.lsmtype = .noLsm
        try d.write(.inventory, entry: inv)
        var ps = Img_PstreeEntry()
        ps.pid = pid; ps.ppid = 0; ps.pgid = pid; ps.sid = pid; ps.threads = [pid]
        try d.write(.pstree, entry: ps)

        var core = Img_CoreEntry()
        core.mtype = .x8664
        var ti = Img_ThreadInfoX86()
        ti.clearTidAddr_p = 0x7f00_0000_1000
        var gp = Img_UserX86RegsEntry(user_regs_struct())
        gp.ip = 0x55_0000_1234; gp.sp = 0x7ffd_0000_0000; gp.ax = UInt64(bitPattern: -516); gp.origAx = 35
        gp.cs = 0x33; gp.ss = 0x2b; gp.flags = 0x246
        ti.gpregs = gp
        var fp = Img_UserX86FpregsEntry()
        fp.cwd = 0x37f; fp.swd = 0; fp.twd = 0; fp.fop = 0; fp.rip = 0; fp.rdp = 0; fp.mxcsr = 0x1f80; fp.mxcsrMask = 0xffff
        fp.stSpace = Array(repeating: 0, count: 32); fp.xmmSpace = Array(repeating: 7, count: 64); fp.padding = Array(repeating: 0, count: 24)
        var xs = Img_UserX86XsaveEntry()
        xs.xstateBv = 0x602e7
        xs.zmmUpper = Array(repeating: 5, count: 64)
        xs.xtilecfg = Data(repeating: 1, count: 64)
        xs.xsaveArea = Data(repeating: 9, count: 11008)
        fp.xsave = xs
        ti.fpregs = fp
        core.threadInfo = ti
        var tc = Img_TaskCoreEntry()
        tc.taskState = TaskState.alive.rawValue; tc.exitCode = 0; tc.personality = 0; tc.flags = 0
        tc.blkSigset = 0x200; tc.comm = "worker"; tc.umask = 0o22
        var rl = Img_TaskRlimitsEntry()
        rl.rlimits = (0..<16).map { i in var r = Img_RlimitEntry(); r.cur = UInt64(i); r.max = UInt64.max; return r }
        tc.rlimits = rl
        var sa = Img_SaEntry(); sa.sigaction = 0x1234; sa.flags = 0x4000000; sa.restorer = 0x5678; sa.mask = 0
        tc.sigactions = [sa]
        core.tc = tc
        var th = Img_ThreadCoreEntry()
        th.futexRla = 0x7f00_0000_2000; th.futexRlaLen = 24; th.blkSigset = 0x200
        var creds = Img_CredsEntry()
        creds.uid = 0; creds.gid = 0; creds.euid = 0; creds.egid = 0; creds.suid = 0; creds.sgid = 0; creds.fsuid = 0; creds.fsgid = 0
        creds.capEff = [0xffffffff, 0x1ff]; creds.secbits = 0; creds.groups = [0, 10]
        th.creds = creds
        var rseq = Img_RseqEntry(); rseq.rseqAbiPointer = 0x7f00_0000_3000; rseq.rseqAbiSize = 32; rseq.signature = 0x53053053
        th.rseqEntry = rseq
        core.threadCore = th
        try d.write(.core, id: Int(pid), entry: core)

        var ids = Img_TaskKobjIdsEntry(); ids.vmID = 1; ids.filesID = 2; ids.fsID = 3; ids.sighandID = 4
        try d.write(.ids, id: Int(pid), entry: ids)
        var mm = Img_MmEntry()
        mm.mmStartCode = 0x55_0000_0000; mm.mmEndCode = 0x55_0000_1000; mm.mmStartData = 0; mm.mmEndData = 0
        mm.mmStartStack = 0x7ffd_0000_0000; mm.mmStartBrk = 0x56_0000_0000; mm.mmBrk = 0x56_0000_1000
        mm.mmArgStart = 1; mm.mmArgEnd = 2; mm.mmEnvStart = 3; mm.mmEnvEnd = 4; mm.exeFileID = 1
        var vma = Img_VmaEntry(); vma.start = 0x7f00_0000_0000; vma.end = 0x7f00_0000_4000; vma.pgoff = 0; vma.shmid = 0
        vma.prot = 3; vma.flags = 0x22; vma.status = 0x3; vma.fd = -1
        mm.vmas = [vma]
        mm.mmSavedAuxv = [33, 0x7ffd_0000_1000, 0, 0]
        try d.write(.mm, id: Int(pid), entry: mm)
        var pe = Img_PagemapEntry(); pe.vaddr = 0x7f00_0000_0000; pe.nrPages = UInt32(pages)
        try d.writePagemap(pid: Int32(pid), pagesID: 1, entries: [pe])
        let fd = try d.createPagesFile(id: 1)
        let bytes = [UInt8](repeating: 0xab, count: pages * 4096)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)

        var reg = Img_RegFileEntry(); reg.id = 1; reg.flags = 2; reg.pos = 10; reg.name = "/tmp/some file"
        var fown = Img_FownEntry(); fown.uid = 0; fown.euid = 0; fown.signum = 0; fown.pidType = 0; fown.pid = 0
        reg.fown = fown
        var fe = Img_FileEntry(); fe.type = .reg; fe.id = 1; fe.reg = reg
        try d.write(.files, entry: fe)
        var fi = Img_FdinfoEntry(); fi.id = 1; fi.flags = 0; fi.type = .reg; fi.fd = 3
        try d.write(.fdinfo, id: 2, entries: [fi])
        var fs = Img_FsEntry(); fs.cwdID = 1; fs.rootID = 1; fs.umask = 0o22
        try d.write(.fs, id: Int(pid), entry: fs)
        try d.write(.sigacts, id: Int(pid), entries: [sa, sa])
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
            guard case ImageError.oversized(_, 8, _, _) = e else { return XCTFail("\(e)") }
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
            guard case ImageError.missingRequired(_, 8, let msg) = e else { return XCTFail("\(e)") }
            XCTAssertTrue(msg.contains("PstreeEntry"))
        }
    }

    func testGarbageDoesNotDecode() throws {
        let d = try ImageDirectory(path: dir)
        try writeSample(d)
        try corrupt(d.filePath(.fs, 4242)) { b in for i in 12..<b.count { b[i] = 0xff } }
        XCTAssertThrowsError(try d.readOne(.fs, id: 4242, as: Img_FsEntry.self)) { e in
            guard case ImageError.undecodable(_, 8, _) = e else { return XCTFail("\(e)") }
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
        XCTAssertEqual(try b.chain().map(\.path), [b.path, b.path + "/../a"])
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
