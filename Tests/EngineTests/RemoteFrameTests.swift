import Engine
import Foundation
import XCTest

/// The `--remote` frame parser: what every hop (proxy, cache) runs on untrusted bytes.
final class RemoteFrameTests: XCTestCase {
    func frame(_ kind: RemoteFrameKind, _ snap: String, _ name: String = "", _ payload: [UInt8] = []) -> [UInt8] {
        RemoteFrame(kind, snapshot: snap, name: name, payload: payload).encode()
    }

    func testRoundTrip() throws {
        for f in [RemoteFrame(.begin, snapshot: "pre2", name: "pre1"), RemoteFrame(.data, snapshot: "s", name: "pages-1.img", payload: [1, 2, 3]),
                  RemoteFrame(.end, snapshot: "s", name: "core-1.img"), RemoteFrame(.complete, snapshot: "s"),
                  RemoteFrame(.failed, snapshot: "s", payload: Array("cryo dump -t 1 failed".utf8)), RemoteFrame(.info, snapshot: "img-1-dump")] {
            let (back, used) = try RemoteFrame.decode(f.encode() + [9, 9])
            XCTAssertEqual(back, f)
            XCTAssertEqual(used, f.encode().count)
        }
    }

    func testRefusals() {
        func refused(_ b: [UInt8], _ why: String, line: UInt = #line) {
            XCTAssertThrowsError(try RemoteFrame.decode(b), line: line) { e in XCTAssertTrue("\(e)".contains(why), "\(e)", line: line) }
        }
        refused(frame(.data, "s", "..", [1]), "'..'")
        refused(frame(.data, "s", "a/b", [1]), "'/'")
        refused(frame(.data, "s", "a\u{0}b", [1]), "NUL")
        refused(frame(.begin, "..", ""), "'..'")
        refused(frame(.begin, "s", "../pre1"), "'/'")
        refused(frame(.data, "s", "x", []), "empty data frame")
        refused(frame(.end, "s", ""), "without an image name")
        refused(frame(.complete, "s", "x"), "with an image name")
        var big = RemoteFrame.encodeHead(.data, snapshot: "s", name: "x", length: RemoteFrame.maxChunk + 1)
        refused(big, "over the limit")
        big = RemoteFrame.encodeHead(.failed, snapshot: "s", name: "", length: Int(Int32.max))
        refused(big, "over the limit")
        var bad = frame(.info, "s"); bad[0] ^= 1
        refused(bad, "bad magic")
        bad = frame(.info, "s"); bad[4] = 77
        refused(bad, "unknown frame kind")
        bad = frame(.info, "s"); bad[21] = 1
        refused(bad, "reserved")
        refused(Array(frame(.data, "s", "x", [1, 2, 3]).dropLast()), "cut short")
        refused([1, 2, 3], "short header")
    }

    func testOrder() throws {
        var o = RemoteFrameOrder()
        XCTAssertThrowsError(try o.check(RemoteFrame(.data, snapshot: "s", name: "a", payload: [1]))) { XCTAssertTrue("\($0)".contains("unknown snapshot id s")) }
        try o.check(RemoteFrame(.begin, snapshot: "s"))
        try o.check(RemoteFrame(.data, snapshot: "s", name: "a", payload: [1]))
        try o.check(RemoteFrame(.end, snapshot: "s", name: "a"))
        XCTAssertThrowsError(try o.check(RemoteFrame(.data, snapshot: "s", name: "a", payload: [1])))
        XCTAssertThrowsError(try o.check(RemoteFrame(.begin, snapshot: "s")))
        XCTAssertThrowsError(try o.check(RemoteFrame(.getFd, snapshot: "s", name: "a")))
        try o.check(RemoteFrame(.complete, snapshot: "s"))
        XCTAssertThrowsError(try o.check(RemoteFrame(.end, snapshot: "s", name: "b")))
    }

    /// Fuzz target: mutated frames never crash the parser; what it accepts re-encodes to the
    /// same bytes and carries only ids that pass the name rules. CRYO_FUZZ_ITERATIONS sets the count.
    func testFuzzHeaderParser() {
        let seeds = [frame(.begin, "pre2", "pre1"), frame(.data, "final", "pages-1.img", [UInt8](repeating: 7, count: 64)),
                     frame(.end, "final", "pagemap-42.img"), frame(.complete, "final"), frame(.failed, "x", "", Array("boom".utf8)),
                     frame(.get, "pre1", "pagemap-1.img"), frame(.ok, "s", "parent", Array("a\nb".utf8)), frame(.error, "s", "", [65])]
        var m = ImageJSONTests.Mutator(state: 0x9e37_79b9_7f4a_7c15)
        let n = Int(ProcessInfo.processInfo.environment["CRYO_FUZZ_ITERATIONS"] ?? "") ?? 20000
        var accepted = 0
        for i in 0..<n {
            let b = m.mutate(seeds[i % seeds.count])
            guard let (f, used) = try? RemoteFrame.decode(b) else { continue }
            accepted += 1
            XCTAssertEqual(f.encode(), Array(b.prefix(used)))
            for id in [f.snapshot, f.name] where !id.isEmpty {
                XCTAssertFalse(id.contains("/") || id.contains("..") || id.contains("\u{0}"), id)
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }
}
