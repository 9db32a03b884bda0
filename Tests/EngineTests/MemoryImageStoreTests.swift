import CKernel
import Engine
import Foundation
import Glibc
import XCTest

/// The restore side of a stream keeps images in anonymous memory that grows by mremap: bytes
/// survive every move, `mapped` shows them in place, `open` hands out an equal memfd, and a
/// stream whose pages fail their CRC in place keeps nothing.
final class MemoryImageStoreTests: XCTestCase {
    /// Every 4 KiB page stamped with its number (cheap in a debug build).
    func pattern(_ n: Int) -> [UInt8] {
        var b = [UInt8](repeating: 0x5a, count: n)
        for i in stride(from: 0, to: n - 1, by: 4096) { b[i] = UInt8(truncatingIfNeeded: i >> 12); b[i + 1] = UInt8(truncatingIfNeeded: i >> 20) }
        return b
    }

    func testGrowsInPlaceAndReadsBack() throws {
        let s = MemoryImageStore(location: "/nowhere")
        let big = pattern(12 << 20 + 777)
        let w = try s.writer("pages-1.img")
        var off = 0
        // Uneven pieces, through both ways of writing: several mremaps.
        for (i, n) in [1, 4095, 1 << 20, 3 << 19, 5 << 20, big.count].enumerated() where off < big.count {
            let k = min(n, big.count - off)
            if i % 2 == 0 {
                try big.withUnsafeBytes { try w.write(UnsafeRawBufferPointer(rebasing: $0[off..<(off + k)])) }
            } else {
                let p = try w.reserve(k)
                big.withUnsafeBytes { _ = memcpy(p, $0.baseAddress! + off, k) }
                w.advance(k)
            }
            off += k
        }
        XCTAssertFalse(s.exists("pages-1.img"), "visible before its writer finished")
        try w.finish()
        XCTAssertEqual(s.bytes, big.count)
        let m = try XCTUnwrap(s.mapped("pages-1.img"))
        XCTAssertEqual(m.count, big.count)
        XCTAssertTrue(big.withUnsafeBytes { memcmp($0.baseAddress!, m.baseAddress!, big.count) == 0 })
        XCTAssertTrue(try s.read("pages-1.img") == big)
        try assertOpenReads(s, "pages-1.img", big)

        try s.write("empty.img", [])
        XCTAssertEqual(try s.read("empty.img"), [])
        XCTAssertEqual(s.mapped("empty.img")?.count, 0)
        XCTAssertNil(s.mapped("absent.img"))
        let aborted = try s.writer("core-1.img")
        try aborted.write([1, 2, 3])
        aborted.abort()
        XCTAssertFalse(s.exists("core-1.img"))
        s.discard()
        XCTAssertEqual(try s.names(), [])
    }

    /// `open` hands out a file holding exactly `bytes`.
    func assertOpenReads(_ s: MemoryImageStore, _ name: String, _ bytes: [UInt8]) throws {
        let (fd, size) = try s.open(name)
        defer { close(fd) }
        XCTAssertEqual(size, bytes.count)
        var back = [UInt8](repeating: 0, count: size)
        XCTAssertEqual(back.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, size, 0) }, size)
        XCTAssertTrue(back == bytes)
    }

    /// `bytes` written into a new pipe by a thread, which then closes its end; returns the read end.
    /// A reader that stops early (a refused stream) gives the writer EPIPE, not SIGPIPE.
    func pipeFeeding(_ bytes: [UInt8]) -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        var p: [Int32] = [-1, -1]
        XCTAssertEqual(pipe(&p), 0)
        let w = p[1]
        Thread {
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { write(w, $0.baseAddress! + off, bytes.count - off) }
                if n <= 0 { break }
                off += n
            }
            close(w)
        }.start()
        return p[0]
    }

    /// A pages image backed by a memfd: bytes spliced from a pipe and bytes written through
    /// the mapping (a compressed frame's way) interleave, survive the mapping's moves, and
    /// read back through `mapped`, `read` and `open`; a pipe that ends early gives fewer bytes.
    func testMemfdImageFromPipe() throws {
        let s = MemoryImageStore(location: "/nowhere")
        let big = pattern(9 << 20 + 4321)
        let r = pipeFeeding(big)
        defer { close(r) }
        let w = try s.writer("pages-2.img", memfd: true)
        XCTAssertTrue(w.splices)
        var off = 0
        for (i, n) in [100, 1 << 20, 4096, 3 << 20, 1, big.count].enumerated() where off < big.count {
            let k = min(n, big.count - off)
            if i % 2 == 0 {
                let (at, got) = try w.splice(from: r, k)
                XCTAssertEqual(got, k)
                XCTAssertTrue(big.withUnsafeBytes { memcmp(at, $0.baseAddress! + off, k) == 0 }, "spliced bytes at \(off)")
            } else {
                // Through the mapping: the same bytes, taken from the pipe by read().
                let at = try w.reserve(k)
                var got = 0
                while got < k { let n = read(r, at + got, k - got); XCTAssertGreaterThan(n, 0); if n <= 0 { break }; got += n }
            }
            w.advance(k)
            off += k
        }
        let (_, none) = try w.splice(from: r, 4096)
        XCTAssertEqual(none, 0, "the pipe has ended")
        try w.finish()
        let m = try XCTUnwrap(s.mapped("pages-2.img"))
        XCTAssertEqual(m.count, big.count)
        XCTAssertTrue(big.withUnsafeBytes { memcmp($0.baseAddress!, m.baseAddress!, big.count) == 0 })
        try assertOpenReads(s, "pages-2.img", big)
        XCTAssertThrowsError(try s.writer("core-1.img").splice(from: r, 1), "anonymous images do not splice")
        s.discard()
    }

    /// A stream read from a pipe: its pages are spliced into memfds and checked there, a flipped
    /// bit is refused by the CRC and a stream cut inside a payload is a truncation, each naming
    /// the image.
    func testStreamThroughPipeSplicesPages() throws {
        let path = NSTemporaryDirectory() + "cryo-memstore-\(UUID().uuidString)"
        defer { unlink(path) }
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(fd) }
        let out = try StreamImageStore(fd: fd, location: "/nowhere", compress: false)
        try out.write("pages-1.img", pattern(3 << 20 + 8192))
        try out.write("core-1.img", [1, 2, 3])
        try out.write("inventory.img", [1])
        try out.commit()
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let good = pipeFeeding(bytes)
        defer { close(good) }
        let r = try StreamReader(fd: good, location: "/nowhere").read()
        XCTAssertTrue(Array(try XCTUnwrap(r.store.mapped("pages-1.img"))) == pattern(3 << 20 + 8192))
        XCTAssertEqual(try r.store.read("core-1.img"), [1, 2, 3])
        var bad = bytes
        bad[bad.count / 2] ^= 1
        let badFd = pipeFeeding(bad)
        defer { close(badFd) }
        XCTAssertThrowsError(try StreamReader(fd: badFd, location: "/nowhere").read()) { e in
            XCTAssertTrue("\(e)".contains("checksum mismatch"), "\(e)")
            XCTAssertTrue("\(e)".contains("pages-1.img"), "\(e)")
        }
        let cut = pipeFeeding(Array(bytes[0..<(bytes.count / 2)]))
        defer { close(cut) }
        XCTAssertThrowsError(try StreamReader(fd: cut, location: "/nowhere").read()) { e in
            XCTAssertTrue("\(e)".contains("ended inside a data payload"), "\(e)")
            XCTAssertTrue("\(e)".contains("pages-1.img"), "\(e)")
        }
    }

    /// A bit flipped inside a page payload (read straight into the image's memory): refused by
    /// its CRC, naming the image.
    func testPayloadCheckedInPlace() throws {
        let path = NSTemporaryDirectory() + "cryo-memstore-\(UUID().uuidString)"
        defer { unlink(path) }
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        defer { close(fd) }
        let out = try StreamImageStore(fd: fd, location: "/nowhere", compress: false)
        try out.write("pages-1.img", pattern(3 << 20))
        try out.write("inventory.img", [1])
        try out.commit()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        let gfd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(gfd) }
        let good = try StreamReader(fd: gfd, location: "/nowhere").read()
        XCTAssertTrue(Array(try XCTUnwrap(good.store.mapped("pages-1.img"))) == pattern(3 << 20))
        bytes[bytes.count / 2] ^= 1
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress!, bytes.count, 0) }, bytes.count)
        let rfd = open(path, O_RDONLY | O_CLOEXEC)
        defer { close(rfd) }
        XCTAssertThrowsError(try StreamReader(fd: rfd, location: "/nowhere").read()) { e in
            XCTAssertTrue("\(e)".contains("checksum mismatch"), "\(e)")
            XCTAssertTrue("\(e)".contains("pages-1.img"), "\(e)")
        }
    }

    /// The three-way CRC-32C against its check value and a bit-by-bit reference, at lengths
    /// around its block sizes (3 x 256 and 3 x 8192 bytes) and offsets that break alignment.
    func testCRC32CMatchesReference() {
        func reference(_ seed: UInt32, _ b: ArraySlice<UInt8>) -> UInt32 {
            var c = ~seed
            for x in b {
                c ^= UInt32(x)
                for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82f6_3b78 : c >> 1 }
            }
            return ~c
        }
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { ck_crc32c(0, $0.baseAddress, $0.count) }, 0xe306_9283)
        var g = SystemRandomNumberGenerator()
        let data = (0..<(3 * 8192 * 2 + 100)).map { _ in UInt8.random(in: 0...255, using: &g) }
        for len in [0, 1, 7, 8, 767, 768, 769, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 777, 2 * 3 * 8192 + 3] {
            for off in [0, 1, 5] where off + len <= data.count {
                let seed = UInt32.random(in: 0...UInt32.max, using: &g)
                let got = data.withUnsafeBytes { ck_crc32c(seed, $0.baseAddress! + off, len) }
                XCTAssertEqual(got, reference(seed, data[off..<(off + len)]), "length \(len) offset \(off)")
            }
        }
    }
}
