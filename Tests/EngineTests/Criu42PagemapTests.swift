import Engine
import Foundation
import XCTest

/// CRIU 4.2 writes pagemap entries with the count in `nr_pages = 5` (uint64) and 0 in the old
/// field 2 (as its page server does): cryo reads the count from field 5.
final class Criu42PagemapTests: XCTestCase {
    func testPageCountFromField5() throws {
        let dir = NSTemporaryDirectory() + "criu42-\(UUID().uuidString)"
        let images = try ImageDirectory(path: dir, create: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // vaddr 0x7f0000000000, compat_nr_pages 0, flags PE_PRESENT, nr_pages 3: as CRIU 4.2 encodes it.
        var bytes: [UInt8] = [0x08]
        var v: UInt64 = 0x7f00_0000_0000
        while v >= 0x80 { bytes.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
        bytes += [0x10, 0x00, 0x20, 0x04, 0x28, 0x03]
        let e = try Img_PagemapEntry(serializedBytes: bytes)
        XCTAssertEqual(e.nrPages, 0)
        try images.writePagemap(pid: 5, pagesID: 9, entries: [e])
        let map = try images.pageMap(pid: 5)
        XCTAssertEqual(map.entries.map(\.nrPages), [3])
        XCTAssertEqual(map.dataBytes, 3 * 4096)
    }
}
