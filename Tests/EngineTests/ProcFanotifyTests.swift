@testable import Engine
import XCTest

/// fanotify's fdinfo lines, parsed by the fdinfo parser (Files/Fanotify.swift reads only these).
final class ProcFanotifyTests: XCTestCase {
    func testFanotifyGroupAndMarks() throws {
        // A real group: an inode mark with an ignored mask, a mount mark and a filesystem mark.
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/proc/fdinfo-fanotify.sample", withExtension: nil))
        let info = try ProcFdInfoParser.parse(try String(contentsOf: url, encoding: .utf8), source: "fdinfo")
        XCTAssertEqual(info.fanotifyGroup, .init(flags: 1, eventFlags: 0x8000))
        XCTAssertEqual(info.fanotifyMarks, [
            .init(object: .other, mflags: 0, mask: 0x20, ignoredMask: 0),
            .init(object: .mount(id: 0x1b), mflags: 0, mask: 0x20, ignoredMask: 0),
            .init(object: .inode(ino: 0x3df9d, sdev: 0xfe00000, fhandleType: 1, fhandle: [0x9d, 0xdf, 0x03, 0, 0, 0, 0, 0]),
                  mflags: 0x40, mask: 0x28, ignoredMask: 2),
        ])
    }

    func testFanotifyMarkWithoutHandleAndBadLines() throws {
        let noHandle = try ProcFdInfoParser.parse("fanotify ino:2a sdev:800001 mflags:0 mask:1 ignored_mask:0\n", source: "f")
        XCTAssertEqual(noHandle.fanotifyMarks.first?.object, .inode(ino: 0x2a, sdev: 0x800001, fhandleType: nil, fhandle: []))
        XCTAssertNil(noHandle.fanotifyGroup)
        for bad in ["fanotify mnt_id:1b mask:20 ignored_mask:0", "fanotify ino:2a sdev:1 mflags:0 mask:1 ignored_mask:0 fhandle-type:1 f_handle:abc",
                    "fanotify flags:zz event-flags:0"] {
            XCTAssertThrowsError(try ProcFdInfoParser.parse(bad + "\n", source: "f"), bad)
        }
    }
}
