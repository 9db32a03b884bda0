import Foundation
import Glibc
import XCTest
@testable import Engine

/// `cryo image decode/encode` on images CRIU's encoder wrote and on cryo's own, plus seeded
/// mutation runs over every reader an image or a page-server peer can reach.
final class ImageJSONTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        var t = Array("/tmp/cryo-json-test-XXXXXX".utf8CString)
        dir = String(cString: mkdtemp(&t)!)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func criuFixtures() throws -> String {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/images/criu", withExtension: nil)).path
    }

    /// Every image CRIU's crit encoded decodes, and encodes back to the same bytes, except for
    /// fields of CRIU's that cryo's schemas leave out (protobuf JSON cannot carry unknown
    /// fields): those images come back with every field cryo knows, and decode the same.
    func testCriuImagesRoundTripByteForByte() throws {
        let src = try criuFixtures()
        let names = try FileManager.default.contentsOfDirectory(atPath: src).filter { $0.hasSuffix(".img") }.sorted()
        XCTAssertGreaterThanOrEqual(names.count, 10)
        // core: the LSM profile of creds ("unconfined"); files: a regular file's build id.
        let withFieldsCryoLacks: Set<String> = ["core-77.img", "core-78.img", "files.img"]
        for n in names {
            let file = src + "/" + n
            let json = try ImageJSON.decode(file: file, pages: true)
            let again = try ImageJSON.encode(json: json, file: n)
            if withFieldsCryoLacks.contains(n) {
                XCTAssertLessThan(again.count, try ImageDirectory.readFile(file).count, n)
                let copy = dir + "/" + n
                try Data(again).write(to: URL(fileURLWithPath: copy))
                XCTAssertEqual(try ImageJSON.decode(file: copy, pages: true), json, n)
            } else {
                XCTAssertEqual(again, try ImageDirectory.readFile(file), "\(n) did not come back byte for byte")
            }
        }
        let ps = try ImageJSON.decode(file: src + "/pstree.img")
        XCTAssertTrue(ps.contains("\"magic\":\"PSTREE\"") && ps.contains("\"pid\":77"), ps)
        let pm = try ImageJSON.decode(file: src + "/pagemap-77.img")
        XCTAssertTrue(pm.contains("\"pages_id\":"), "CRIU's field names, not Swift's: \(pm)")
        let pages = try ImageJSON.decode(file: src + "/pages-3.img")
        XCTAssertTrue(pages.contains("\"nr_pages\":3") && !pages.contains("data"), pages)
        XCTAssertEqual(try ImageJSON.info(file: src + "/sigacts-77.img").entries, 64)
    }

    /// A real dump by CRIU 4.2 (built from source; pipe00, a process with pipes and data in
    /// them): every image cryo models decodes, the explorer reads the tree, and the kinds cryo
    /// does not model are refused by name, not misread.
    func testReadsImagesCriu42Wrote() throws {
        let src = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/images/criu42", withExtension: nil)).path
        for n in try FileManager.default.contentsOfDirectory(atPath: src).sorted() where n.hasSuffix(".img") {
            // Every kind here is modelled now (timens-*.img since the time namespace work).
            XCTAssertNoThrow(try ImageJSON.decode(file: src + "/" + n), n)
        }
        let x = try ImageExplorer(path: src)
        XCTAssertEqual(try x.ps().map(\.pid), [27057])
        XCTAssertEqual(try x.ps().first?.comm, "pipe00")
        let fds = try XCTUnwrap(try x.fds().first).fds
        XCTAssertEqual(fds.filter { $0.target.hasPrefix("pipe[") }.count, 6, "\(fds)")
        let mems = try XCTUnwrap(try x.mems().first).mappings
        XCTAssertEqual(mems.reduce(0) { $0 + $1.pagesHere }, 104, "every page of pages-1.img belongs to a mapping")
        let pd = try ImageJSON.decode(file: src + "/pipes-data.img")
        XCTAssertTrue(pd.contains("\"extra\""), pd)
    }

    /// cryo's own images of every kind, including those with bytes after each entry.
    func testCryoImagesRoundTripWithPayloads() throws {
        let d = try ImageDirectory(path: dir)
        try ImageSamples.write(d, pid: 4242, pages: 3)
        var pipe = Img_PipeDataEntry(); pipe.pipeID = 9; pipe.bytes = 5
        try d.writeWithPayloads(.pipesData, [(pipe, Array("hello".utf8))])
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".img") }.sorted()
        XCTAssertTrue(files.contains("pipes-data.img"))
        for n in files {
            let file = dir + "/" + n
            let json = try ImageJSON.decode(file: file, pages: true)
            XCTAssertEqual(try ImageJSON.encode(json: json, file: n), try ImageDirectory.readFile(file), n)
        }
        let pj = try ImageJSON.decode(file: dir + "/pipes-data.img")
        XCTAssertTrue(pj.contains("\"extra\":\"aGVsbG8=\""), pj)
        // An entry whose announced length disagrees with its bytes is refused, not written.
        let bad = pj.replacingOccurrences(of: "aGVsbG8=", with: "aGk=")
        XCTAssertThrowsError(try ImageJSON.encode(json: bad, file: "bad.json")) { XCTAssertTrue("\($0)".contains("announces 5 bytes")) }
    }

    func testCorruptImagesNameFileAndOffset() throws {
        let src = try criuFixtures()
        let good = try ImageDirectory.readFile(src + "/pstree.img")
        let cut = dir + "/pstree.img"
        try Data(good.prefix(good.count - 3)).write(to: URL(fileURLWithPath: cut))
        XCTAssertThrowsError(try ImageJSON.decode(file: cut)) { e in
            XCTAssertTrue("\(e)".contains(cut) && "\(e)".contains("offset"), "\(e)")
        }
        let junk = dir + "/junk.img"
        try Data([1, 2, 3, 4, 5, 6, 7, 8]).write(to: URL(fileURLWithPath: junk))
        XCTAssertThrowsError(try ImageJSON.decode(file: junk)) { XCTAssertTrue("\($0)".contains("magic 0x4030201"), "\($0)") }
        XCTAssertThrowsError(try ImageJSON.encode(json: "[1]", file: "x.json"))
        XCTAssertThrowsError(try ImageJSON.encode(json: "{\"magic\":\"NOPE\",\"entries\":[]}", file: "x.json"))
    }

    // MARK: seeded mutation runs (the fuzz targets)

    /// Iterations per target; CRYO_FUZZ_ITERATIONS=1000000 for the long runs.
    var iterations: Int { Int(ProcessInfo.processInfo.environment["CRYO_FUZZ_ITERATIONS"] ?? "") ?? 20000 }

    struct Mutator {
        var state: UInt64
        mutating func next() -> UInt64 { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
        /// Bit flips, byte sets, interesting u32s (lengths, magics), truncations, insertions.
        mutating func mutate(_ b: [UInt8]) -> [UInt8] {
            var out = b
            for _ in 0...below(4) {
                switch below(6) {
                case 0 where !out.isEmpty: out[below(out.count)] ^= UInt8(1 << below(8))
                case 1 where !out.isEmpty: out[below(out.count)] = UInt8(truncatingIfNeeded: next())
                case 2 where out.count >= 4:
                    let v: UInt32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, 0x0400_0000, 4096, UInt32(truncatingIfNeeded: next())][below(7)]
                    let at = below(out.count - 3)
                    for k in 0..<4 { out[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
                case 3: out = Array(out.prefix(below(out.count + 1)))
                case 4: out.insert(contentsOf: (0..<below(16)).map { _ in UInt8(truncatingIfNeeded: next()) }, at: below(out.count + 1))
                default: if !out.isEmpty { out.remove(at: below(out.count)) }
                }
            }
            return out
        }
    }

    func write(_ bytes: [UInt8], _ path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    /// Target 1: the image decoders (every kind, through the JSON tool and the typed reader).
    func testFuzzImageDecoders() throws {
        let src = try criuFixtures()
        let seeds = try FileManager.default.contentsOfDirectory(atPath: src).filter { $0.hasSuffix(".img") && !$0.hasPrefix("pages") }.sorted()
        var m = Mutator(state: 0x9e37_79b9_7f4a_7c15)
        var refused = 0
        let seedBytes = try seeds.map { try ImageDirectory.readFile(src + "/" + $0) }
        for i in 0..<iterations {
            let name = seeds[i % seeds.count]
            let bytes = m.mutate(seedBytes[i % seeds.count])
            do { _ = try ImageJSON.info(bytes: bytes, file: name) } catch { refused += 1 }
            // The JSON path (and the file reader) on a share of them: it is slower.
            if i % 50 == 0 {
                let path = dir + "/" + name
                write(bytes, path)
                _ = try? ImageJSON.decode(file: path)
            }
        }
        XCTAssertGreaterThan(refused, 0, "no mutation was ever refused: the target proves nothing")
    }

    /// Target 2: pagemaps and the parent chain (overlaps, ranges past the pages file, loops).
    func testFuzzPagemapAndChainReader() throws {
        let base = dir + "/chain"
        let a = try ImageDirectory(path: base + "/a", create: true), b = try ImageDirectory(path: base + "/b", create: true)
        try ImageSamples.write(a, pid: 4242, pages: 3)
        try ImageSamples.write(b, pid: 4242, pages: 3)
        try b.writePagemap(pid: 4242, pagesID: 1, entries: [Img_PagemapEntry(vaddr: 0x7f00_0000_0000, nrPages: 2, flags: [.parent]),
                                                             Img_PagemapEntry(vaddr: 0x7f00_0000_2000, nrPages: 1, flags: [.present])])
        try b.setParent(relativePath: "../a")
        let seedB = try ImageDirectory.readFile(b.filePath(.pagemap, 4242))
        let seedA = try ImageDirectory.readFile(a.filePath(.pagemap, 4242))
        var m = Mutator(state: 0x1234_5678_9abc_def1)
        var refused = 0
        for i in 0..<iterations {
            let bytes = m.mutate(i % 2 == 0 ? seedB : seedA)
            do { _ = try ImageDirectory.parsePageMap(bytes: bytes, file: "pagemap-4242.img", pid: 4242) } catch { refused += 1 }
            // Through files, with the chain and the pages files, on a share of them.
            guard i % 50 == 0 else { continue }
            write(bytes, (i % 100 == 0 ? b : a).filePath(.pagemap, 4242))
            if i % 150 == 0 { try b.setParent(relativePath: ["../a", "../b", ".", "/nonexistent", "../../chain/a"][m.below(5)]) }
            do { _ = try PageSources(images: b, pid: 4242) } catch { refused += 1 }
            write(seedA, a.filePath(.pagemap, 4242))
            write(seedB, b.filePath(.pagemap, 4242))
        }
        XCTAssertGreaterThan(refused, 0)
    }

    /// Target 3: page-server headers from the wire.
    func testFuzzPageServerHeaders() {
        var m = Mutator(state: 0xdead_beef_cafe_f00d)
        let seed = PageServerHeader(.addF, flags: 4, nrPages: 3, vaddr: 0x7f00_0000_0000, id: 4242).bytes
        var accepted = 0, refused = 0
        for _ in 0..<(iterations * 10) {
            let b = m.below(4) == 0 ? (0..<PageServerHeader.size).map { _ in UInt8(truncatingIfNeeded: m.next()) } : m.mutate(seed)
            // Both framings the server reads: CRIU 4.2's 32-byte header and the older 24-byte one.
            guard let h = PageServerHeader(bytes: b) ?? PageServerHeader(legacyBytes: b) else { refused += 1; continue }
            if let why = PageServerLimits.problem(h) { XCTAssertFalse(why.isEmpty); refused += 1; continue }
            accepted += 1
            // What is accepted is safe to act on: a bounded, page-aligned user range.
            if [.addF, .add, .get, .hole].contains(h.command) {
                XCTAssertLessThanOrEqual(h.nrPages, PageServerLimits.maxPagesPerHeader)
                XCTAssertEqual(h.vaddr % 4096, 0)
                XCTAssertLessThanOrEqual(h.vaddr + h.nrPages * 4096, PageServerLimits.userSpaceEnd)
            }
        }
        XCTAssertGreaterThan(accepted, 0); XCTAssertGreaterThan(refused, 0)
    }
}
