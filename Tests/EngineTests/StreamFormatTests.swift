import CKernel
import Engine
import Foundation
import Glibc
import XCTest

/// The checkpoint stream's frame codec: a round trip through StreamImageStore and StreamReader,
/// hand-made hostile frames, and a fuzzed parser that must refuse every damaged stream with a
/// StreamError and never crash or hang.
final class StreamFormatTests: XCTestCase {
    var dir = ""
    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cryo-stream-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    /// Some images, one of them larger than a frame and written in uneven pieces, two open at once.
    func writeSample(_ path: String, compress: Bool, parent: String? = nil) throws -> [String: [UInt8]] {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        let s = try StreamImageStore(fd: fd, location: dir, compress: compress)
        var want: [String: [UInt8]] = [:]
        var big = [UInt8](repeating: 0, count: 3 * StreamFormat.maxChunk + 12345)
        for i in stride(from: 0, to: big.count, by: 4096) { big[i] = UInt8(truncatingIfNeeded: i / 4096) }
        let w = try s.create("pages-1.img")
        let small = try s.create("core-1.img")
        var off = 0
        for n in [1, 4095, 1 << 20, 3 << 19, big.count] where off < big.count {
            let k = min(n, big.count - off)
            try big.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[off..<(off + k)])) }
            off += k
            try small.write([UInt8(off & 0xff)])
        }
        try w.finish()
        try small.finish()
        want["pages-1.img"] = big
        want["core-1.img"] = (0..<5).map { _ in UInt8(0) }
        want["empty.img"] = []
        try s.write("empty.img", [])
        want["inventory.img"] = Array("inventory".utf8)
        if let parent { try s.setParent(parent) }
        try s.write("inventory.img", want["inventory.img"]!)
        try s.commit()
        return want
    }

    func readStream(_ path: String) throws -> StreamReader.Result {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(fd) }
        return try StreamReader(fd: fd, location: dir).read()
    }

    func testRoundTrip() throws {
        for compress in [false, true] {
            let path = dir + "/s\(compress)"
            var want = try writeSample(path, compress: compress)
            let r = try readStream(path)
            // core-1 got one byte per piece written before the pages image was complete.
            want["core-1.img"] = try r.store.read("core-1.img")
            XCTAssertEqual(want["core-1.img"]!.count, 5)
            XCTAssertEqual(Set(try r.store.names()), Set(want.keys))
            for (n, b) in want {
                XCTAssertEqual(try r.store.read(n), b, n)
                XCTAssertEqual(r.store.mapped(n).map { Array($0) }, b, n)
            }
            let (fd, size) = try r.store.open("pages-1.img")
            close(fd)
            XCTAssertEqual(size, want["pages-1.img"]!.count)
            XCTAssertEqual(r.images, 4)
            if compress {
                // Mostly zero pages: zstd must have made the stream much smaller than its images.
                XCTAssertLessThan(r.streamBytes, Int(r.imageBytes) / 10)
            }
        }
    }

    /// Pages handed over in a pipe (a frozen task vmspliced them there) go onto the stream by
    /// splice, their CRC taken from a tee'd copy; a compressed stream reads them out instead.
    /// Either way the reader gets the same bytes.
    func testSplicedPayloadsRoundTrip() throws {
        for compress in [false, true] {
            let path = dir + "/spliced\(compress)"
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            XCTAssertGreaterThanOrEqual(fd, 0)
            let s = try StreamImageStore(fd: fd, location: dir, compress: compress)
            XCTAssertTrue(s.storesBeforeCommit, "a file stores spliced bytes at once")
            var p: [Int32] = [-1, -1]
            XCTAssertEqual(pipe(&p), 0)
            defer { close(p[0]); close(p[1]) }
            XCTAssertGreaterThanOrEqual(PipeSize.grow(p[1], upTo: 1 << 20), 1 << 20)
            var want: [UInt8] = []
            let w = try XCTUnwrap(try s.create("pages-1.img") as? SplicingImageWriter)
            for (i, n) in [4096, 1 << 20, 12288, 1 << 20, 8192].enumerated() {
                let piece = (0..<n).map { UInt8(truncatingIfNeeded: $0 / 4096 + i * 7) }
                XCTAssertEqual(piece.withUnsafeBytes { write(p[1], $0.baseAddress, n) }, n)
                try w.splice(from: p[0], count: n)
                want += piece
            }
            try w.finish()
            try s.write("inventory.img", [1])
            try s.commit()
            close(fd)
            let r = try readStream(path)
            XCTAssertEqual(try r.store.read("pages-1.img"), want, "compress \(compress)")
        }
    }

    func testParentLinkResolvesAgainstLocation() throws {
        try FileManager.default.createDirectory(atPath: dir + "/pre1", withIntermediateDirectories: true)
        _ = try writeSample(dir + "/s", compress: false, parent: "pre1")
        let r = try readStream(dir + "/s")
        XCTAssertEqual(try r.store.parent()?.location, try ImageDirectory(path: dir + "/pre1").path)
    }

    /// A frame with a valid CRC, so only the check under test can refuse it.
    func frame(type: UInt8, flags: UInt8 = 0, name: [UInt8], payload: [UInt8], raw: Int? = nil) -> [UInt8] {
        var h: [UInt8] = [0x46, 0x52, type, flags]
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { h.append(contentsOf: $0) } }
        put(UInt16(name.count)); put(UInt16(0)); put(UInt32(payload.count)); put(UInt32(raw ?? payload.count))
        let crc = payload.withUnsafeBytes { StreamFormat.crc(header: h, name: name, payload: $0) }
        put(crc)
        return h + name + payload
    }

    func expectRefused(_ bytes: [UInt8], _ text: String, file: StaticString = #filePath, line: UInt = #line) {
        let path = dir + "/bad"
        _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        XCTAssertThrowsError(try readStream(path), file: file, line: line) { e in
            XCTAssertTrue(e is StreamError, "\(e)", file: file, line: line)
            XCTAssertTrue("\(e)".contains(text), "\(e) does not say \(text)", file: file, line: line)
        }
    }

    func testHostileFrames() {
        let head = StreamFormat.streamHeader(compressed: false)
        let end0: [UInt8] = [UInt8](repeating: 0, count: 8)
        let commit0 = frame(type: 4, name: [], payload: [UInt8](repeating: 0, count: 16))
        for bad in ["a/b", "..", "../core.img", "x\0y", "."] {
            expectRefused(head + frame(type: 2, name: Array(bad.utf8), payload: end0) + commit0, "refused")
        }
        expectRefused(head + frame(type: 2, name: [0xff, 0xfe], payload: end0) + commit0, "refused")
        expectRefused(head + frame(type: 1, name: Array("p.img".utf8), payload: [1], raw: 2 << 20), "announces")
        // Lengths past the limits, CRC and all right.
        var huge = frame(type: 1, name: Array("p.img".utf8), payload: [])
        huge.replaceSubrange(8..<16, with: [0, 0, 0x20, 0, 0, 0, 0x20, 0])
        expectRefused(head + huge, "data frame of")
        expectRefused(head + frame(type: 9, name: [], payload: []), "unknown frame type 9")
        expectRefused(head + frame(type: 4, name: Array("x".utf8), payload: [UInt8](repeating: 0, count: 16)), "with an image name")
        expectRefused(head + frame(type: 1, name: Array("p.img".utf8), payload: [1, 2]) + commit0, "unfinished: p.img (2 bytes)")
        expectRefused(head + frame(type: 1, name: Array("p.img".utf8), payload: [1, 2]), "ended before the commit frame; unfinished: p.img")
        expectRefused(head + frame(type: 2, name: Array("p.img".utf8), payload: end0) + frame(type: 2, name: Array("p.img".utf8), payload: end0), "ended twice")
        expectRefused(head + frame(type: 1, flags: 1, name: Array("p.img".utf8), payload: [1, 2, 3], raw: 4096), "header says uncompressed")
        expectRefused(StreamFormat.streamHeader(compressed: true) + frame(type: 1, flags: 1, name: Array("p.img".utf8), payload: [1, 2, 3], raw: 4096), "does not decompress")
        expectRefused(head + frame(type: 5, name: [], payload: Array("disk full".utf8)), "the dump failed (abort frame at byte 16): disk full")
        expectRefused(head + commit0 + [0], "bytes after the commit frame")
        // A data frame that changed after its CRC was taken: a dump that failed after splicing
        // let the tree run. With the abort frame after it, the reader says the dump failed.
        var changed = frame(type: 1, name: Array("p.img".utf8), payload: [1, 2, 3, 4])
        changed[changed.count - 1] ^= 0xff
        expectRefused(head + changed + frame(type: 5, name: [], payload: Array("no space".utf8)), "the dump failed (abort frame at byte 45): no space (a data frame before it had changed")
        expectRefused(head + changed + frame(type: 1, name: Array("p.img".utf8), payload: [5]) + commit0, "checksum mismatch in a data frame")
        expectRefused(head + changed, "checksum mismatch in a data frame")
        expectRefused(Array("NOTCRYO!".utf8) + head.dropFirst(8), "no CRYOSTRM magic")
        expectRefused(head + frame(type: 4, name: [], payload: [1] + [UInt8](repeating: 0, count: 15)), "says 1 images")
    }

    /// Every damaged copy of a good stream is refused with a StreamError (the CRC covers every
    /// byte but the stream header, whose checks come first); none crashes or hangs.
    func testFuzzedStreamsAreRefused() throws {
        let good = dir + "/good"
        _ = try writeSample(good, compress: true)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        var rng: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
        func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
        let iterations = Int(ProcessInfo.processInfo.environment["CRYO_FUZZ_ITERATIONS"] ?? "") ?? 3000
        var refused = 0
        for _ in 0..<iterations {
            var b = bytes
            switch below(5) {
            case 0: b[below(b.count)] ^= UInt8(1 << below(8))
            case 1: b = Array(b.prefix(below(b.count)))
            case 2: b.insert(UInt8(truncatingIfNeeded: next()), at: below(b.count))
            case 3: let i = below(b.count - 4); b.replaceSubrange(i..<(i + 4), with: [0xff, 0xff, 0xff, 0x7f])
            default: b.remove(at: below(b.count))
            }
            if b == bytes { continue }
            let path = dir + "/fuzz"
            _ = FileManager.default.createFile(atPath: path, contents: Data(b))
            do {
                _ = try readStream(path)
                XCTFail("a damaged stream was accepted")
            } catch is StreamError {
                refused += 1
            }
        }
        XCTAssertGreaterThan(refused, iterations / 2)
    }
}
