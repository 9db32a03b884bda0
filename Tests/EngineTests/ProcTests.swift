import XCTest
import Glibc
import CKernel
@testable import Engine

final class ProcTests: XCTestCase {
    let proc = ProcReader()

    func fixture(_ name: String) throws -> String {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/proc/" + name, withExtension: nil))
        return try String(contentsOf: url, encoding: .utf8)
    }

    // MARK: crafted samples

    func testMapsSampleWithSpacesDeletedAndSpecial() throws {
        let m = try ProcMapsParser.parse(try fixture("maps.sample"), source: "maps.sample")
        XCTAssertEqual(m.count, 6)
        XCTAssertEqual(m[0].path, "/usr/bin/my prog")
        XCTAssertEqual(m[1].permString, "r-xp")
        XCTAssertEqual(m[1].offset, 0x2000)
        XCTAssertEqual(m[1].devMajor, 0xfe)
        XCTAssertEqual(m[1].inode, 1234567)
        XCTAssertTrue(m[2].shared)
        XCTAssertTrue(m[2].isDeleted)
        XCTAssertEqual(m[2].pathWithoutDeleted, "/memfd:shm")
        XCTAssertEqual(m[3].path, "")
        XCTAssertTrue(m[3].isAnonymous)
        XCTAssertEqual(m[5].start, 0xffffffffff600000)
        XCTAssertTrue(m[5].isSpecial)
    }

    func testMalformedMapsNamesLine() throws {
        XCTAssertThrowsError(try ProcMapsParser.parse(try fixture("maps.bad"), source: "maps.bad")) { e in
            guard case ProcError.malformed(let path, let line, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(path, "maps.bad")
            XCTAssertEqual(line, 2)
            XCTAssertTrue("\(e)".contains("maps.bad:2"))
        }
        XCTAssertThrowsError(try ProcMapsParser.parse("1000-2000 rw-p 0 00:00", source: "x"))
        XCTAssertThrowsError(try ProcMapsParser.parse("2000-1000 rw-p 00000000 00:00 0", source: "x"))
        XCTAssertThrowsError(try ProcMapsParser.parse("11112222333344445-2 rw-p 00000000 00:00 0", source: "x"))
    }

    func testStatWithParenthesesInComm() throws {
        let s = try ProcStatParser.parse(try fixture("stat.sample"), source: "stat.sample")
        XCTAssertEqual(s.pid, 4242)
        XCTAssertEqual(s.comm, "my (weird) prog")
        XCTAssertEqual(s.state, "S")
        XCTAssertEqual(s.ppid, 1)
        XCTAssertEqual(s.session, 4242)
        XCTAssertEqual(s.numThreads, 3)
        XCTAssertEqual(s.startCode, 94000000000000)
        XCTAssertEqual(s.envEnd, 140720000003000)
        XCTAssertEqual(s.exitCode, 0)
        XCTAssertThrowsError(try ProcStatParser.parse("12 (x) S 1 2", source: "short"))
        XCTAssertThrowsError(try ProcStatParser.parse("no comm here", source: "nocomm"))
    }

    func testStatusSample() throws {
        let s = try ProcStatusParser.parse(try fixture("status.sample"), source: "status.sample")
        XCTAssertEqual(s.name, "worker")
        XCTAssertEqual(s.umask, 0o027)
        XCTAssertEqual(s.uids, [0, 1, 2, 3])
        XCTAssertEqual(s.gids, [4, 5, 6, 7])
        XCTAssertEqual(s.groups, [10, 20, 30])
        XCTAssertEqual(s.nsPid, [4242, 1])
        XCTAssertEqual(s.shdPnd, 0x200)
        XCTAssertEqual(s.sigBlk, 0xa00)
        XCTAssertEqual(s.sigCgt, UInt64.max)
        XCTAssertEqual(s.capEff, 0x1ffffffffff)
        XCTAssertTrue(s.noNewPrivs)
        XCTAssertEqual(s.seccompMode, 2)
        XCTAssertThrowsError(try ProcStatusParser.parse("Name:\tx\nbroken line\n", source: "st")) { e in
            XCTAssertEqual(e as? ProcError, .malformed(path: "st", line: 2, reason: "no ':' in \"broken line\""))
        }
    }

    func testMountinfoSampleUnescapes() throws {
        let m = try ProcMountInfoParser.parse(try fixture("mountinfo.sample"), source: "mi")
        XCTAssertEqual(m.count, 2)
        XCTAssertEqual(m[0].mountPoint, "/mnt/with space")
        XCTAssertEqual(m[0].optionalFields, ["master:1"])
        XCTAssertEqual(m[0].fsType, "ext3")
        XCTAssertEqual(m[0].devMajor, 98)
        XCTAssertEqual(m[1].optionalFields, [])
        XCTAssertThrowsError(try ProcMountInfoParser.parse("36 35 98:0 / /x rw\n", source: "mi"))
    }

    func testFdinfoEpollSample() throws {
        let f = try ProcFdInfoParser.parse(try fixture("fdinfo-epoll.sample"), source: "fdinfo")
        XCTAssertEqual(f.flags, 2)
        XCTAssertEqual(f.mntId, 15)
        XCTAssertEqual(f.epollTargets.map(\.tfd), [5, 6])
        XCTAssertEqual(f.epollTargets[0].events, 0x19)
        XCTAssertEqual(f.epollTargets[0].data, 7)
    }

    // MARK: real /proc of this process

    func testOwnMapsStatusStatTasks() throws {
        let me = getpid()
        let maps = try proc.maps(pid: me)
        XCTAssertTrue(maps.contains { $0.path == "[stack]" })
        XCTAssertTrue(maps.contains { $0.path == "[vdso]" })
        let exe = try proc.exe(pid: me)
        XCTAssertTrue(maps.contains { $0.path == exe }, "the test binary is mapped")
        XCTAssertEqual(try proc.status(pid: me).pid, me)
        let st = try proc.stat(pid: me)
        XCTAssertEqual(st.pid, me)
        XCTAssertEqual(st.ppid, getppid())
        XCTAssertEqual(try proc.tasks(pid: me).count, Int(st.numThreads))
        XCTAssertTrue(try proc.tasks(pid: me).contains(me))
        XCTAssertEqual(try proc.smaps(pid: me).count, maps.count)
        XCTAssertFalse(try proc.mountinfo(pid: me).isEmpty)
        XCTAssertEqual(try proc.cwd(pid: me), FileManager.default.currentDirectoryPath)
        XCTAssertFalse(try proc.cmdline(pid: me).isEmpty)
    }

    func testOwnFdsAndFdinfo() throws {
        let me = getpid()
        let path = NSTemporaryDirectory() + "/proc-test-\(me)"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        defer { close(fd); unlink(path) }
        _ = write(fd, "0123456789", 10)
        lseek(fd, 4, SEEK_SET)
        XCTAssertTrue(try proc.fds(pid: me).contains(fd))
        XCTAssertEqual(try proc.fdTarget(pid: me, fd: fd), path.replacingOccurrences(of: "//", with: "/"))
        let info = try proc.fdinfo(pid: me, fd: fd)
        XCTAssertEqual(info.pos, 4)
        XCTAssertEqual(info.flags & O_APPEND, O_APPEND)
        XCTAssertEqual(info.flags & O_ACCMODE, O_RDWR)

        let efd = eventfd(7, 0)
        defer { close(efd) }
        XCTAssertEqual(try proc.fdinfo(pid: me, fd: efd).eventfdCount, 7)
        let ep = epoll_create1(0)
        defer { close(ep) }
        var ev = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: 0x1234))
        epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev)
        let targets = try proc.fdinfo(pid: me, fd: ep).epollTargets
        XCTAssertEqual(targets.map(\.tfd), [efd])
        XCTAssertEqual(targets.first?.data, 0x1234)
    }

    func testGoneProcess() throws {
        XCTAssertThrowsError(try proc.stat(pid: 999_999)) { e in
            XCTAssertEqual(e as? ProcError, .gone(pid: 999_999))
        }
    }

    func testManyMappingsParseFast() throws {
        var text = ""
        for i in 0..<10_000 {
            let s = 0x7f00_0000_0000 + UInt64(i) * 0x2000
            text += "\(String(s, radix: 16))-\(String(s + 0x1000, radix: 16)) rw-p 00000000 00:00 0 \n"
        }
        let t0 = Date()
        let m = try ProcMapsParser.parse(text, source: "big")
        XCTAssertEqual(m.count, 10_000)
        XCTAssertLessThan(Date().timeIntervalSince(t0), 1.0, "10k mappings must parse well under a second")
    }
}
