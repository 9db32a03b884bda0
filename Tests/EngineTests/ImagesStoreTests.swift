import XCTest
import Glibc
import SwiftProtobuf
@testable import Engine

/// ImageKind's table, listing, raw pages, the parent chain and cross-file checks.
final class ImagesStoreTests: XCTestCase {
    var dir = ""

    override func setUp() { dir = ImageSamples.tempDir("imgstore") }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    // MARK: kinds

    /// Our .proto files keep CRIU's field numbers, names, types, labels and defaults, checked
    /// against the schemas pycriu carries (Fixtures/images/check-schemas.py).
    func testSchemasMatchCRIU() throws {
        let protoDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/Engine/Images/Schema/proto").standardized.path
        let script = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/images/check-schemas", withExtension: "py")).path
        for need in ["/usr/bin/protoc", "/usr/bin/python3", "/usr/lib/python3/dist-packages/pycriu/images/core_pb2.py"] where access(need, F_OK) != 0 {
            print("ImagesStoreTests.testSchemasMatchCRIU: skipped, \(need) is missing (Debian packages protobuf-compiler, criu)")
            throw XCTSkip("\(need) missing")
        }
        let protos = try FileManager.default.contentsOfDirectory(atPath: protoDir).filter { $0.hasSuffix(".proto") }.sorted()
        XCTAssertFalse(protos.isEmpty, protoDir)
        let set = dir + "/schemas.pb"
        let (pc, pout) = try ImageSamples.run("/usr/bin/protoc", ["--proto_path=" + protoDir, "--include_imports", "--descriptor_set_out=" + set] + protos)
        XCTAssertEqual(pc, 0, pout)
        let (code, out) = try ImageSamples.run("/usr/bin/python3", [script, set])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("0 problems"), out)
    }

    /// Our magics are CRIU's: checked against pycriu's table where it is installed.
    func testMagicsMatchPycriu() throws {
        let path = "/usr/lib/python3/dist-packages/pycriu/images/magic.py"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            print("ImagesStoreTests.testMagicsMatchPycriu: skipped, \(path) is missing (Debian package criu)")
            throw XCTSkip("pycriu not installed")
        }
        var table: [String: UInt32] = [:]
        for line in text.split(separator: "\n") where line.hasPrefix("by_name['") {
            let parts = line.dropFirst(9).split(separator: "'")
            guard parts.count >= 2, let v = UInt32(parts[1].filter(\.isNumber)) else { continue }
            table[String(parts[0])] = v
        }
        XCTAssertEqual(table["IMG_COMMON"], ImageKind.commonMagic)
        XCTAssertEqual(table["IMG_SERVICE"], ImageKind.serviceMagic)
        for kind in ImageKind.allCases where kind != .pages {
            XCTAssertEqual(table[kind.criuName], kind.magic, "\(kind)")
        }
    }

    func testFileNamesParseBack() {
        for kind in ImageKind.allCases {
            let name = kind.fileName(kind.hasID ? 31337 : nil)
            let parsed = ImageKind.parse(fileName: name)
            XCTAssertEqual(parsed?.kind, kind, name)
            XCTAssertEqual(parsed?.id, kind.hasID ? 31337 : nil, name)
        }
        XCTAssertEqual(ImageKind.parse(fileName: "pagemap-7.img")?.kind, .pagemap)
        XCTAssertEqual(ImageKind.parse(fileName: "pages-7.img")?.kind, .pages)
        XCTAssertEqual(ImageKind.parse(fileName: "core-0.img")?.id, 0)
        XCTAssertEqual(ImageKind.parse(fileName: "posix-timers-9.img")?.kind, .posixTimers)
        for bad in ["core-.img", "core-01.img", "core--1.img", "core-+1.img", "core-1x.img", "core-1.img.tmp", "core-99999999999999999999999.img",
                    "parent", "stats-dump", "inventory-1.img", "unknown-1.img"] {
            XCTAssertNil(ImageKind.parse(fileName: bad), bad)
        }
    }

    func testListingAndIDs() throws {
        let d = try ImageDirectory(path: dir)
        try ImageSamples.write(d)
        // An unfinished write is not an image.
        let w = try d.pagesWriter(id: 9)
        try w.write([1, 2, 3])
        let files = try d.files()
        XCTAssertFalse(files.contains { $0.name.hasSuffix(".tmp") })
        XCTAssertEqual(files.first { $0.name == "core-4242.img" }?.kind, .core)
        XCTAssertEqual(try d.ids(of: .core), [4242])
        XCTAssertEqual(try d.ids(of: .pages), [1])
        w.abort()
        XCTAssertFalse(FileManager.default.fileExists(atPath: d.filePath(.pages, 9) + ".tmp"))
    }

    /// Every kind with entries decodes through the generic reader, older CRIU's kinds included.
    func testReadAnyAndLegacyKinds() throws {
        let d = try ImageDirectory(path: dir)
        try ImageSamples.write(d)
        var it = Img_ItimerEntry(); it.isec = 1; it.iusec = 2; it.vsec = 3; it.vusec = 4
        try d.write(.itimers, id: 4242, entries: [it, it, it])
        var pt = Img_PosixTimerEntry()
        pt.itID = 0; pt.clockID = 1; pt.siSigno = 14; pt.itSigevNotify = 0; pt.sivalPtr = 0; pt.overrun = 0
        pt.isec = 1; pt.insec = 0; pt.vsec = 1; pt.vnsec = 0
        try d.write(.posixTimers, id: 4242, entries: [pt])
        var rl = Img_RlimitEntry(); rl.cur = 1024; rl.max = 4096
        try d.write(.rlimit, id: 4242, entries: Array(repeating: rl, count: 16))
        let core = try d.readOne(.core, id: 4242, as: Img_CoreEntry.self)
        try d.write(.creds, id: 4242, entry: core.threadCore.creds)
        try d.write(.regFiles, entries: [try d.read(.files, as: Img_FileEntry.self)[0].reg])

        for f in try d.files() {
            guard let kind = f.kind, kind != .pages else { continue }
            let img = try d.readAny(kind, id: f.id)
            XCTAssertFalse(img.entries.isEmpty, f.name)
            XCTAssertEqual(img.head != nil, kind == .pagemap, f.name)
            for e in img.entries { XCTAssertTrue(type(of: e) == kind.entryType!, f.name) }
        }
        XCTAssertEqual(try d.read(.rlimit, id: 4242, as: Img_RlimitEntry.self).count, 16)
        XCTAssertThrowsError(try d.readAny(.pages, id: 1))

        guard access(ImageSamples.crit, X_OK) == 0 else {
            print("ImagesStoreTests.testReadAnyAndLegacyKinds: crit part skipped, \(ImageSamples.crit) is not installed")
            throw XCTSkip("crit not installed")
        }
        for kind in [ImageKind.itimers, .posixTimers, .rlimit, .creds, .regFiles] {
            let (code, out) = try ImageSamples.run(ImageSamples.crit, ["decode", "-i", d.filePath(kind, 4242)])
            XCTAssertEqual(code, 0, "crit decode \(kind): \(out)")
            XCTAssertTrue(out.contains("\"magic\": \"\(kind.criuName)\""), out)
        }
    }

    /// A metadata image far bigger than any of ours is refused before it is read.
    func testHugeImageRefused() throws {
        let d = try ImageDirectory(path: dir)
        let f = d.filePath(.mm, 1)
        let fd = open(f, O_WRONLY | O_CREAT, 0o600)
        XCTAssertEqual(ftruncate(fd, off_t(ImageCodec.maxImageSize + 1)), 0)
        close(fd)
        XCTAssertThrowsError(try d.readOne(.mm, id: 1, as: Img_MmEntry.self)) { e in
            guard case ImageError.tooLarge(let file, _, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, f)
        }
    }

    /// An empty file, and a header with the service magic where CRIU writes the common one.
    func testEmptyFileAndWrongFirstMagic() throws {
        let d = try ImageDirectory(path: dir)
        try d.writeBytes(d.filePath(.core, 9), [])
        XCTAssertThrowsError(try d.readOne(.core, id: 9, as: Img_CoreEntry.self)) { e in
            XCTAssertEqual(e as? ImageError, .truncated(file: d.filePath(.core, 9), offset: 0, needed: 4, available: 0))
        }
        var b: [UInt8] = []
        ImageCodec.appendU32(&b, ImageKind.serviceMagic)
        ImageCodec.appendU32(&b, ImageKind.core.magic!)
        try d.writeBytes(d.filePath(.core, 9), b)
        XCTAssertThrowsError(try d.readOne(.core, id: 9, as: Img_CoreEntry.self)) { e in
            XCTAssertEqual(e as? ImageError, .badMagic(file: d.filePath(.core, 9), offset: 0, expected: ImageKind.commonMagic, found: ImageKind.serviceMagic))
        }
        // An mm image under a core image's name: right first magic, wrong second.
        try d.write(.mm, id: 9, entry: try { var c = Img_CoreEntry(); c.mtype = .x8664; return c }())
        try FileManager.default.moveItem(atPath: d.filePath(.core, 9), toPath: d.filePath(.core, 9) + ".x")
        try FileManager.default.copyItem(atPath: d.filePath(.mm, 9), toPath: d.filePath(.core, 9))
        XCTAssertThrowsError(try d.readOne(.core, id: 9, as: Img_CoreEntry.self)) { e in
            guard case ImageError.badMagic(_, 4, ImageKind.core.magic!, ImageKind.mm.magic!) = e else { return XCTFail("\(e)") }
        }
    }

    func testWriterRefusesIncompleteEntries() throws {
        let d = try ImageDirectory(path: dir)
        var ps = Img_PstreeEntry(); ps.pid = 1
        XCTAssertThrowsError(try d.write(.pstree, entry: ps)) { e in
            XCTAssertEqual(e as? ImageError, .incompleteEntry(message: Img_PstreeEntry.protoMessageName))
        }
        XCTAssertFalse(d.exists(.pstree))
    }

    // MARK: raw pages

    func testPagesByRange() throws {
        let d = try ImageDirectory(path: dir)
        let w = try d.pagesWriter(id: 5)
        let chunk = (0..<3 * imagePageSize).map { UInt8(truncatingIfNeeded: $0 / imagePageSize + 1) }
        try w.write(chunk)
        try [UInt8](repeating: 0xee, count: imagePageSize).withUnsafeBytes { try w.write($0) }
        XCTAssertEqual((w as? PagesWriter)?.offset, 4 * imagePageSize)
        XCTAssertFalse(d.exists(.pages, 5), "the file appears only when finished")
        try w.finish()
        XCTAssertTrue(d.exists(.pages, 5))

        let r = try d.pagesReader(id: 5)
        XCTAssertEqual(r.size, 4 * imagePageSize)
        XCTAssertEqual(try r.read(offset: imagePageSize, count: imagePageSize), [UInt8](repeating: 2, count: imagePageSize))
        XCTAssertEqual(try r.read(offset: 3 * imagePageSize + 10, count: 5), [UInt8](repeating: 0xee, count: 5))
        XCTAssertThrowsError(try r.read(offset: 3 * imagePageSize, count: imagePageSize + 1)) { e in
            guard case ImageError.truncated(let file, let off, _, let avail) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, d.filePath(.pages, 5)); XCTAssertEqual(off, 3 * imagePageSize); XCTAssertEqual(avail, imagePageSize)
            XCTAssertTrue("\(e)".contains("pages-5.img") && "\(e)".contains("offset \(3 * imagePageSize)"), "\(e)")
        }
        XCTAssertThrowsError(try r.read(offset: Int.max, count: 2))
        XCTAssertThrowsError(try r.read(offset: -1, count: 2))
        XCTAssertThrowsError(try d.pagesReader(id: 6)) { e in XCTAssertEqual(e as? ImageError, .missing(file: d.filePath(.pages, 6))) }
    }

    /// 256 MiB through the writer and reader in 64 MiB ranges: no per-page work, so it is quick.
    func testLargePagesFile() throws {
        let d = try ImageDirectory(path: dir)
        let chunk = 64 << 20, chunks = 4
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: imagePageSize)
        defer { buf.deallocate() }
        let start = Date()
        let w = try d.pagesWriter(id: 1)
        for i in 0..<chunks {
            buf.initializeMemory(as: UInt8.self, repeating: UInt8(i + 1))
            try w.write(UnsafeRawBufferPointer(buf))
        }
        try w.finish()
        let r = try d.pagesReader(id: 1)
        XCTAssertEqual(r.size, chunk * chunks)
        for i in (0..<chunks).reversed() {
            try r.read(into: buf, at: i * chunk)
            XCTAssertEqual(buf[0], UInt8(i + 1)); XCTAssertEqual(buf[chunk - 1], UInt8(i + 1))
        }
        print("ImagesStoreTests.testLargePagesFile: 256 MiB written and read in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
    }

    // MARK: pagemap flags and the parent chain

    /// Three snapshots: the oldest has every page, the middle rewrote one, the newest another.
    func makeChain() throws -> (gp: ImageDirectory, p: ImageDirectory, c: ImageDirectory) {
        let gp = try ImageDirectory(path: dir + "/1", create: true)
        let p = try ImageDirectory(path: dir + "/2", create: true)
        let c = try ImageDirectory(path: dir + "/3", create: true)
        let base: UInt64 = 0x7f00_0000_0000
        for (i, d) in [gp, p, c].enumerated() {
            try ImageSamples.write(d, pages: 4)
            var pages: [UInt8] = []
            var entries: [Img_PagemapEntry] = []
            switch i {
            case 0:
                entries = [.init(vaddr: base, nrPages: 4, flags: [.present])]
                for n in 0..<4 { pages += [UInt8](repeating: UInt8(0x10 + n), count: imagePageSize) }
            case 1:
                entries = [.init(vaddr: base, nrPages: 1, flags: [.parent]),
                           .init(vaddr: base + 0x1000, nrPages: 1, flags: [.present]),
                           .init(vaddr: base + 0x2000, nrPages: 2, flags: [.parent])]
                pages = [UInt8](repeating: 0x21, count: imagePageSize)
            default:
                entries = [.init(vaddr: base, nrPages: 3, flags: [.parent]),
                           .init(vaddr: base + 0x3000, nrPages: 1, flags: [.present, .lazy])]
                pages = [UInt8](repeating: 0x33, count: imagePageSize)
            }
            try d.writePagemap(pid: 4242, pagesID: 1, entries: entries)
            let w = try d.pagesWriter(id: 1)
            try w.write(pages)
            try w.finish()
        }
        try p.setParent(relativePath: "../1")
        try c.setParent(relativePath: "../2")
        return (gp, p, c)
    }

    func testResolvePagesThroughChain() throws {
        let (_, _, c) = try makeChain()
        XCTAssertNoThrow(try c.validateConsistency())
        let segs = try c.resolvePages(pid: 4242)
        XCTAssertEqual(segs.map(\.vaddr), [0x7f00_0000_0000, 0x7f00_0000_1000, 0x7f00_0000_2000, 0x7f00_0000_3000])
        XCTAssertEqual(segs.map { $0.source?.depth }, [2, 1, 2, 0])
        XCTAssertEqual(segs.map(\.lazy), [false, false, false, true])
        // Read each page from where the chain says it is.
        let expected: [UInt8] = [0x10, 0x21, 0x12, 0x33]
        for (s, want) in zip(segs, expected) {
            let src = try XCTUnwrap(s.source)
            let r = try src.directory.pagesReader(id: src.pagesID)
            let bytes = try r.read(offset: src.offset, count: s.byteCount)
            XCTAssertEqual(bytes.first, want); XCTAssertEqual(bytes.last, want)
        }
        XCTAssertEqual(segs[2].nrPages, 1)
        XCTAssertEqual(segs[2].source?.offset, 2 * imagePageSize)
    }

    func testInParentWithoutParentOrPages() throws {
        let (gp, p, c) = try makeChain()
        // The grandparent lacks a page the parent says it has.
        try gp.writePagemap(pid: 4242, pagesID: 1, entries: [.init(vaddr: 0x7f00_0000_0000, nrPages: 2, flags: [.present])])
        XCTAssertThrowsError(try c.resolvePages(pid: 4242)) { e in
            guard case ImageError.inconsistent(let file, let off, let why) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(ImageDirectory.canonical(file), ImageDirectory.canonical(p.filePath(.pagemap, 4242))); XCTAssertGreaterThan(off, 8)
            XCTAssertTrue(why.contains("does not have them"), why)
        }
        // No parent at all.
        unlink(c.path + "/parent")
        XCTAssertThrowsError(try c.resolvePages(pid: 4242)) { e in XCTAssertTrue("\(e)".contains("no parent snapshot"), "\(e)") }
        XCTAssertThrowsError(try c.validateConsistency()) { e in
            XCTAssertTrue("\(e)".contains("pagemap-4242.img") && "\(e)".contains("no parent snapshot"), "\(e)")
        }
    }

    func testPagemapPresentAndParentBothSetRejected() throws {
        let d = try ImageDirectory(path: dir)
        try d.writePagemap(pid: 1, pagesID: 1, entries: [.init(vaddr: 0x1000, nrPages: 1, flags: [.present, .parent])])
        XCTAssertThrowsError(try d.pageMap(pid: 1)) { e in XCTAssertTrue("\(e)".contains("both"), "\(e)") }
    }

    func testChainTooDeep() throws {
        var dirs: [ImageDirectory] = []
        for i in 0...ImageDirectory.maxChainDepth {
            let d = try ImageDirectory(path: dir + "/s\(i)", create: true)
            var inv = Img_InventoryEntry(); inv.imgVersion = 2
            try d.write(.inventory, entry: inv)
            if i > 0 { try d.setParent(relativePath: "../s\(i - 1)") }
            dirs.append(d)
        }
        XCTAssertThrowsError(try dirs.last!.chain()) { e in XCTAssertTrue("\(e)".contains("deeper than"), "\(e)") }
        XCTAssertEqual(try dirs[ImageDirectory.maxChainDepth - 1].chain().count, ImageDirectory.maxChainDepth)
        // A directory that is its own parent.
        try dirs[0].setParent(relativePath: ".")
        XCTAssertThrowsError(try dirs[0].chain()) { e in XCTAssertTrue("\(e)".contains("loop"), "\(e)") }
    }

    // MARK: cross-file consistency

    func testPagesOutsideVMAs() throws {
        let d = try ImageDirectory(path: dir)
        try ImageSamples.write(d, pages: 3)
        // The sample's VMA is 4 pages; move the data past it.
        try d.writePagemap(pid: 4242, pagesID: 1, entries: [.init(vaddr: 0x7f00_0000_2000, nrPages: 3, flags: [.present])])
        XCTAssertThrowsError(try d.validateConsistency()) { e in
            guard case ImageError.inconsistent(let file, 14, let why) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, d.filePath(.pagemap, 4242))
            XCTAssertTrue(why.contains("outside every VMA"), why)
        }
    }

    func testFdinfoNamesUnknownFile() throws {
        let d = try ImageDirectory(path: dir)
        try ImageSamples.write(d)
        var fi = Img_FdinfoEntry(); fi.id = 1; fi.flags = 0; fi.type = .reg; fi.fd = 3
        var bad = fi; bad.id = 77; bad.fd = 4
        try d.write(.fdinfo, id: 2, entries: [fi, bad])
        XCTAssertThrowsError(try d.validateConsistency()) { e in
            guard case ImageError.inconsistent(let file, let off, let why) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, d.filePath(.fdinfo, 2)); XCTAssertGreaterThan(off, 8)
            XCTAssertTrue(why.contains("file id 77"), why)
        }
    }

    func testTreeShape() throws {
        let d = try ImageDirectory(path: dir)
        try ImageSamples.write(d)
        func entry(_ pid: UInt32, _ ppid: UInt32) -> Img_PstreeEntry {
            var p = Img_PstreeEntry(); p.pid = pid; p.ppid = ppid; p.pgid = pid; p.sid = pid; p.threads = [pid]; return p
        }
        try d.write(.pstree, entries: [entry(4242, 0), entry(4242, 4242)])
        XCTAssertThrowsError(try d.validateConsistency()) { e in
            guard case ImageError.inconsistent(_, let off, let why) = e else { return XCTFail("\(e)") }
            XCTAssertGreaterThan(off, 8); XCTAssertTrue(why.contains("twice"), why)
        }
        try d.write(.pstree, entries: [entry(4242, 0), entry(5000, 6000)])
        XCTAssertThrowsError(try d.validateConsistency()) { e in XCTAssertTrue("\(e)".contains("not in the tree"), "\(e)") }
        try d.write(.pstree, entries: [entry(4242, 1)])
        XCTAssertThrowsError(try d.validateConsistency()) { e in XCTAssertTrue("\(e)".contains("not 0"), "\(e)") }
    }

    /// Random damage to any file of a chained snapshot gives errors, never a crash.
    func testRandomDamageAnywhereNeverCrashes() throws {
        let (_, p, c) = try makeChain()
        var rng = SystemRandomNumberGenerator()
        var errors = 0
        for d in [c, p] {
            for f in try d.files() where f.kind != nil && f.kind != .pages {
                let file = d.path + "/" + f.name
                let good = try d.readBytes(file)
                for _ in 0..<60 {
                    var b = good
                    for _ in 0..<Int.random(in: 1...4, using: &rng) where !b.isEmpty {
                        b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    }
                    if Bool.random(using: &rng) { b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) }
                    try d.writeBytes(file, b)
                    do { _ = try c.validateConsistency() } catch { errors += 1 }
                    _ = try? c.resolvePages(pid: 4242)
                    _ = try? d.readAny(f.kind!, id: f.id)
                }
                try d.writeBytes(file, good)
            }
        }
        XCTAssertGreaterThan(errors, 0)
        XCTAssertNoThrow(try c.validateConsistency())
    }

    // MARK: images written by CRIU's tooling

    var criuFixture: String {
        get throws {
            let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/images/criu", withExtension: nil))
            return url.path
        }
    }

    /// Bytes from CRIU's own encoder (Fixtures/images/make-fixtures.sh), with fields cryo does
    /// not declare (TLS, LSM profile, build id, pipe files) and an old-style flagless entry.
    func testReadsCRIUWrittenImages() throws {
        let d = try ImageDirectory(path: try criuFixture)
        XCTAssertNoThrow(try d.validateConsistency())
        let inv = try d.readOne(.inventory, as: Img_InventoryEntry.self)
        XCTAssertEqual(inv.imgVersion, 2); XCTAssertEqual(inv.rootIds.pidNsID, 5)
        let tree = try d.read(.pstree, as: Img_PstreeEntry.self)
        XCTAssertEqual(tree.first?.threads, [77, 78])
        let core = try d.readOne(.core, id: 77, as: Img_CoreEntry.self)
        XCTAssertEqual(core.threadInfo.gpregs.origAx, 230)
        XCTAssertEqual(core.threadInfo.gpregs.ax, UInt64(bitPattern: -516))
        XCTAssertEqual(core.threadInfo.fpregs.xsave.ymmhSpace.count, 64)
        XCTAssertEqual(core.tc.rlimits.rlimits.count, 16)
        XCTAssertEqual(core.threadCore.creds.uid, 1000)
        XCTAssertEqual(core.threadCore.rseqEntry.signature, 0x53053053)
        XCTAssertEqual(core.threadInfo.tls.map(\.entryNumber), [12, 13, 14])
        XCTAssertFalse(core.threadCore.creds.unknownFields.data.isEmpty, "CRIU's lsm_profile, undeclared by cryo, is skipped")
        XCTAssertFalse(try d.readOne(.core, id: 78, as: Img_CoreEntry.self).hasTc)
        let files = try d.read(.files, as: Img_FileEntry.self)
        XCTAssertEqual(files.map(\.type), [.reg, .pipe])
        XCTAssertEqual(files[0].reg.name, "/usr/bin/sleeper")
        XCTAssertEqual(try d.read(.sigacts, id: 77, as: Img_SaEntry.self).count, 64)
        let segs = try d.resolvePages(pid: 77)
        XCTAssertEqual(segs.map(\.nrPages), [2, 1])
        XCTAssertEqual(segs.map { $0.source?.offset }, [0, 2 * imagePageSize])
    }

    /// What we write, crit reads; what crit reads back as JSON matches what we wrote.
    func testCritSeesOurFlagsAndRegisters() throws {
        guard access(ImageSamples.crit, X_OK) == 0 else {
            print("ImagesStoreTests.testCritSeesOurFlagsAndRegisters: skipped, \(ImageSamples.crit) is not installed (Debian package criu)")
            throw XCTSkip("crit not installed")
        }
        let (_, _, c) = try makeChain()
        let (code, out) = try ImageSamples.run(ImageSamples.crit, ["decode", "--pretty", "-i", c.filePath(.pagemap, 4242)])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("PE_PARENT") && out.contains("PE_LAZY | PE_PRESENT"), out)
        let (xc, xout) = try ImageSamples.run(ImageSamples.crit, ["x", c.path, "mems"])
        XCTAssertEqual(xc, 0, xout)
    }
}
