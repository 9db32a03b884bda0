import XCTest
import Foundation
@testable import Engine

/// seccomp.img and cgroup.img as cryo writes and checks them, without processes.
final class SecurityStateTests: XCTestCase {
    /// struct sock_filter bytes: code, jt, jf, k.
    func prog(_ ins: [(UInt16, UInt8, UInt8, UInt32)]) -> [UInt8] {
        ins.flatMap { i in
            [UInt8(i.0 & 0xff), UInt8(i.0 >> 8), i.1, i.2] + (0..<4).map { UInt8(truncatingIfNeeded: i.3 >> (8 * UInt32($0))) }
        }
    }
    lazy var allow = SeccompFilterProgram(program: prog([(0x06, 0, 0, 0x7fff_0000)]), flags: 0)
    lazy var deny = SeccompFilterProgram(program: prog([(0x20, 0, 0, 0), (0x15, 0, 1, 163), (0x06, 0, 0, 0x0005_0065), (0x06, 0, 0, 0x7fff_0000)]), flags: 2)

    func testFiltersThatNeedAListenerAreUnrestorable() {
        XCTAssertNil(allow.unrestorable)
        XCTAssertNil(deny.unrestorable)
        let notif = SeccompFilterProgram(program: prog([(0x20, 0, 0, 0), (0x15, 0, 1, 163), (0x06, 0, 0, 0x7fc0_0000), (0x06, 0, 0, 0x7fff_0000)]), flags: 0)
        XCTAssertEqual(notif.unrestorable, "instruction 2 returns SECCOMP_RET_USER_NOTIF, whose listener fd cryo cannot restore")
        let retA = SeccompFilterProgram(program: prog([(0x20, 0, 0, 0), (0x16, 0, 0, 0)]), flags: 0)
        XCTAssertTrue(retA.unrestorable?.hasPrefix("instruction 1 returns the accumulator") ?? false)
    }

    func testChainsAreWrittenAsCriuDoesAndSharedWhenEqual() throws {
        let b = SeccompImageBuilder()
        XCTAssertEqual(b.add([allow, deny]), 0)
        XCTAssertEqual(b.add([allow]), 2)
        XCTAssertEqual(b.add([allow, deny]), 0, "an identical chain (a child's, TSYNC'd threads') is stored once")
        let f = b.entry.seccompFilters
        XCTAssertEqual(f.count, 3)
        // The thread names its oldest filter; `prev` is the next one to install.
        XCTAssertTrue(f[0].hasPrev); XCTAssertEqual(f[0].prev, 1)
        XCTAssertFalse(f[1].hasPrev); XCTAssertFalse(f[2].hasPrev)
        XCTAssertEqual(f[1].flags, 2)
        let chains = SeccompChains(entry: b.entry)
        XCTAssertEqual(try chains.chain(from: 0, tid: 1, file: "seccomp.img"), [allow, deny])
        XCTAssertEqual(try chains.chain(from: 2, tid: 1, file: "seccomp.img"), [allow])
    }

    func testBadSeccompImagesAreRefused() {
        func refused(_ e: Img_SeccompEntry, from: UInt32, _ words: String) {
            XCTAssertThrowsError(try SeccompChains(entry: e).chain(from: from, tid: 7, file: "seccomp.img")) { err in
                guard case ImageError.inconsistent(_, _, let r) = err else { return XCTFail("\(err)") }
                XCTAssertTrue(r.contains("tid 7") && r.contains(words), r)
            }
        }
        var one = Img_SeccompFilter()
        one.filter = Data(allow.program)
        var e = Img_SeccompEntry()
        e.seccompFilters = [one]
        refused(e, from: 1, "filter 1 of 1")
        var loop = one
        loop.prev = 0
        e.seccompFilters = [loop]
        refused(e, from: 0, "loop")
        var odd = one
        odd.filter = Data([1, 2, 3])
        e.seccompFilters = [odd]
        refused(e, from: 0, "3 bytes")
    }

    func testCgroupLines() throws {
        let l = try ProcCgroupParser.parse("4:memory:/a/b\n1:name=systemd:/\n0::/x:y\n", source: "cg")
        XCTAssertEqual(l, [ProcCgroup(hierarchy: 4, controllers: "memory", path: "/a/b"),
                           ProcCgroup(hierarchy: 1, controllers: "name=systemd", path: "/"),
                           ProcCgroup(hierarchy: 0, controllers: "", path: "/x:y")])
        XCTAssertThrowsError(try ProcCgroupParser.parse("4:memory\n", source: "cg"))
        XCTAssertThrowsError(try ProcCgroupParser.parse("x:memory:/\n", source: "cg"))
    }

    /// Paths and property names come from the images: nothing may leave its hierarchy or
    /// write a file cryo does not manage.
    func testHostileCgroupImagesAreRefused() throws {
        func refused(_ e: Img_CgroupEntry, _ words: String) throws {
            let dir = NSTemporaryDirectory() + "/cgimg-\(UUID().uuidString)"
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let images = try ImageDirectory(path: dir, create: true)
            try images.write(.cgroup, entry: e)
            XCTAssertThrowsError(try CgroupRestore(images: images, mode: .full)) { err in
                XCTAssertTrue("\(err)".contains(words), "\(err)")
            }
        }
        var m = Img_CgMemberEntry(); m.name = "pids"; m.path = "/../../etc"
        var s = Img_CgSetEntry(); s.id = 1; s.ctls = [m]
        var e = Img_CgroupEntry(); e.sets = [s]
        try refused(e, "cgroup path '/../../etc'")
        m.path = "/ok"; s.ctls = [m]; e.sets = [s]
        var d = Img_CgroupDirEntry(); d.dirName = ".."
        var c = Img_CgControllerEntry(); c.cnames = ["pids"]; c.dirs = [d]
        e.controllers = [c]
        try refused(e, "cgroup directory name '..'")
        d.dirName = "ok"
        var p = Img_CgroupPropEntry(); p.name = "cgroup.procs"; p.value = "1"
        d.properties = [p]; c.dirs = [d]; e.controllers = [c]
        try refused(e, "cgroup property 'cgroup.procs'")
    }
}
