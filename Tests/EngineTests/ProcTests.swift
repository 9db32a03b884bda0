import XCTest
import Glibc
import CKernel
@testable import Engine

final class ProcTests: XCTestCase {
    let proc = ProcReader()

    func fixture(_ name: String) throws -> String {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/proc/" + name, withExtension: nil), name)
        return try String(contentsOf: url, encoding: .utf8)
    }

    func assertMalformed(_ body: @autoclosure () throws -> Any, source: String, line: Int,
                         file: StaticString = #filePath, lineNo: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: lineNo) { e in
            guard case ProcError.malformed(let p, let l, _) = e else { return XCTFail("not malformed: \(e)", file: file, line: lineNo) }
            XCTAssertEqual(p, source, file: file, line: lineNo)
            XCTAssertEqual(l, line, "\(e)", file: file, line: lineNo)
            XCTAssertTrue("\(e)".hasPrefix("\(source):\(line): "), "\(e)", file: file, line: lineNo)
        }
    }

    // Not in the Glibc module; raw x86_64 numbers.
    static func sys(_ nr: Int, _ a: Int = 0, _ b: Int = 0, _ c: Int = 0, _ d: Int = 0) -> Int {
        ck_syscall6(nr, a, b, c, d, 0, 0)
    }
    static func gettid() -> Int32 { Int32(sys(186)) }

    // MARK: crafted samples

    func testMapsSampleWithSpacesDeletedAndSpecial() throws {
        let m = try ProcMapsParser.parse(try fixture("maps.sample"), source: "maps.sample")
        XCTAssertEqual(m.count, 8)
        XCTAssertEqual(m[0].path, "/usr/bin/my prog")
        XCTAssertTrue(m[0].isFile)
        XCTAssertEqual(m[1].permString, "r-xp")
        XCTAssertEqual(m[1].offset, 0x2000)
        XCTAssertEqual(m[1].devMajor, 0xfe)
        XCTAssertEqual(m[1].devMinor, 1)
        XCTAssertEqual(m[1].inode, 1234567)
        XCTAssertTrue(m[2].shared)
        XCTAssertTrue(m[2].isDeleted)
        XCTAssertEqual(m[2].path, "/memfd:shm (deleted)", "the suffix stays visible")
        XCTAssertEqual(m[2].pathWithoutDeleted, "/memfd:shm")
        XCTAssertEqual(m[3].path, "")
        XCTAssertTrue(m[3].isAnonymous)
        XCTAssertFalse(m[3].isDeleted)
        XCTAssertTrue(m[4].isStack)
        XCTAssertEqual(m[5].start, 0xffff_ffff_ff60_0000)
        XCTAssertEqual(m[5].size, 0x1000)
        XCTAssertTrue(m[5].isSpecial)
        XCTAssertEqual(m[6].path, "[anon:my name]")
        XCTAssertTrue(m[6].isAnonymous)
        XCTAssertEqual(m[7].devMajor, 0x103)
        XCTAssertEqual(m[7].inode, UInt64.max)
        XCTAssertEqual(m[7].pathWithoutDeleted, "/tmp/dir with spaces/file")
        XCTAssertEqual(m[7].line, "7f0000400000-7f0000401000 r--s 00001000 103:02 18446744073709551615 /tmp/dir with spaces/file (deleted)")
        // Same result from bytes, and a last line without '\n'.
        XCTAssertEqual(try ProcMapsParser.parse(Array(try fixture("maps.sample").utf8), source: "b"), m)
        XCTAssertEqual(try ProcMapsParser.parse("1000-2000 rw-p 00000000 00:00 0", source: "x").first?.path, "")
    }

    func testMalformedMapsNamesLine() throws {
        assertMalformed(try ProcMapsParser.parse(try fixture("maps.bad"), source: "maps.bad"), source: "maps.bad", line: 2)
        assertMalformed(try ProcMapsParser.parse("1000-2000 rw-p 0 00:00", source: "x"), source: "x", line: 1)
        assertMalformed(try ProcMapsParser.parse("2000-1000 rw-p 00000000 00:00 0", source: "x"), source: "x", line: 1)
        assertMalformed(try ProcMapsParser.parse("\n\n11112222333344445-2 rw-p 00000000 00:00 0", source: "x"), source: "x", line: 3)
        assertMalformed(try ProcMapsParser.parse("1000-2000 rwzp 00000000 00:00 0", source: "x"), source: "x", line: 1)
        assertMalformed(try ProcMapsParser.parse("1000-2000 rw-p 00000000 00:00 99999999999999999999 /x", source: "x"), source: "x", line: 1)
        assertMalformed(try ProcMapsParser.parse("1000-2000 rw-p 00000000 00:00 12a /x", source: "x"), source: "x", line: 1)
    }

    func testSmapsSample() throws {
        let s = try ProcSmapsParser.parse(try fixture("smaps.sample"), source: "smaps.sample")
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(s[0].mapping.path, "/usr/bin/my prog")
        XCTAssertEqual(s[0].rss, 8)
        XCTAssertEqual(s[0].pss, 4)
        XCTAssertEqual(s[0].sharedClean, 8)
        XCTAssertEqual(s[0].fields["THPeligible"], 0)
        XCTAssertEqual(s[0].vmFlags, ["rd", "mr", "mw", "me", "dw", "sd"])
        XCTAssertEqual(s[1].anonymous, 500)
        XCTAssertEqual(s[1].swap, 12)
        XCTAssertTrue(s[1].hasFlag("ac"))
        XCTAssertEqual(s[2].vmFlags, ["ex"])
        XCTAssertTrue(s[2].mapping.isSpecial)
        assertMalformed(try ProcSmapsParser.parse(try fixture("smaps.bad"), source: "smaps.bad"), source: "smaps.bad", line: 3)
        assertMalformed(try ProcSmapsParser.parse("Rss: 4 kB\n", source: "s"), source: "s", line: 1)
    }

    func testStatWithParenthesesInComm() throws {
        let s = try ProcStatParser.parse(try fixture("stat.sample"), source: "stat.sample")
        XCTAssertEqual(s.pid, 4242)
        XCTAssertEqual(s.comm, "my (weird) prog")
        XCTAssertEqual(s.state, "S")
        XCTAssertEqual(s.ppid, 1)
        XCTAssertEqual(s.pgrp, 4242)
        XCTAssertEqual(s.session, 4242)
        XCTAssertEqual(s.ttyNr, 0)
        XCTAssertEqual(s.tpgid, -1)
        XCTAssertEqual(s.flags, 4194560)
        XCTAssertEqual(s.minflt, 100)
        XCTAssertEqual(s.utime, 5)
        XCTAssertEqual(s.stime, 6)
        XCTAssertEqual(s.priority, 20)
        XCTAssertEqual(s.numThreads, 3)
        XCTAssertEqual(s.starttime, 123456)
        XCTAssertEqual(s.vsize, 10485760)
        XCTAssertEqual(s.rss, 300)
        XCTAssertEqual(s.rsslim, UInt64.max)
        XCTAssertEqual(s.startCode, 94000000000000)
        XCTAssertEqual(s.endCode, 94000000100000)
        XCTAssertEqual(s.startStack, 140720000000000)
        XCTAssertEqual(s.sigignore, 4096)
        XCTAssertEqual(s.sigcatch, 0)
        XCTAssertEqual(s.exitSignal, 17)
        XCTAssertEqual(s.processor, 1)
        XCTAssertEqual(s.startData, 94000000200000)
        XCTAssertEqual(s.startBrk, 94000001000000)
        XCTAssertEqual(s.argStart, 140720000001000)
        XCTAssertEqual(s.envEnd, 140720000003000)
        XCTAssertEqual(s.exitCode, 0)

        // A comm that looks like the end of the field, with a newline and spaces in it.
        let rest = " S" + String(repeating: " 0", count: 48) + " 9\n"
        let t = try ProcStatParser.parse("7 (a) b) S (x\n)" + rest, source: "t")
        XCTAssertEqual(t.comm, "a) b) S (x\n")
        XCTAssertEqual(t.exitCode, 9)
        assertMalformed(try ProcStatParser.parse("12 (x) S 1 2", source: "short"), source: "short", line: 1)
        assertMalformed(try ProcStatParser.parse("no comm here", source: "nocomm"), source: "nocomm", line: 1)
        assertMalformed(try ProcStatParser.parse("7 (x) S" + String(repeating: " 0", count: 48) + " x 0\n", source: "nan"), source: "nan", line: 1)
        // ppid beyond Int32 is an error, not a silent truncation.
        assertMalformed(try ProcStatParser.parse("7 (x) S 4294967296" + String(repeating: " 0", count: 48) + "\n", source: "big"), source: "big", line: 1)
    }

    func testStatusSample() throws {
        let s = try ProcStatusParser.parse(try fixture("status.sample"), source: "status.sample")
        XCTAssertEqual(s.name, "my worker (x)")
        XCTAssertEqual(s.umask, 0o027)
        XCTAssertEqual(s.state, "t")
        XCTAssertEqual(s.stateName, "tracing stop")
        XCTAssertEqual(s.tgid, 4242)
        XCTAssertEqual(s.pid, 4243)
        XCTAssertEqual(s.ppid, 1)
        XCTAssertEqual(s.tracerPid, 777)
        XCTAssertEqual(s.uids, [0, 1, 2, 3])
        XCTAssertEqual(s.euid, 1)
        XCTAssertEqual(s.gids, [4, 5, 6, 7])
        XCTAssertEqual(s.fdSize, 64)
        XCTAssertEqual(s.groups, [10, 20, 30])
        XCTAssertEqual(s.nsTgid, [4242, 1])
        XCTAssertEqual(s.nsPid, [4243, 2])
        XCTAssertEqual(s.nsPgid, [4242, 1])
        XCTAssertEqual(s.nsSid, [4200, 0])
        XCTAssertFalse(s.kthread)
        XCTAssertEqual(s.memoryKB["VmPeak"], 10240)
        XCTAssertEqual(s.vmRSS, 1608)
        XCTAssertEqual(s.memoryKB["RssAnon"], 112)
        XCTAssertEqual(s.threads, 3)
        XCTAssertEqual(s.sigQueued, 2)
        XCTAssertEqual(s.sigQueueLimit, 96365)
        XCTAssertEqual(s.sigPnd, 0)
        XCTAssertEqual(s.shdPnd, 0x200)
        XCTAssertEqual(s.sigBlk, 0xa00)
        XCTAssertEqual(s.sigIgn, 0x1000)
        XCTAssertEqual(s.sigCgt, UInt64.max)
        XCTAssertEqual(s.capInh, 0)
        XCTAssertEqual(s.capPrm, 0x1fffeffffff)
        XCTAssertEqual(s.capEff, 0x1ffffffffff)
        XCTAssertEqual(s.capBnd, 0x1ffffffffff)
        XCTAssertEqual(s.capAmb, 0x400)
        XCTAssertTrue(s.noNewPrivs)
        XCTAssertEqual(s.seccompMode, 2)
        XCTAssertEqual(s.seccompFilters, 3)
        XCTAssertEqual(s.cpusAllowedList, "0-1")
        XCTAssertEqual(s.voluntaryCtxtSwitches, UInt64.max)
        XCTAssertEqual(s.nonvoluntaryCtxtSwitches, 7)
        XCTAssertEqual(s.fields["Speculation_Store_Bypass"], "thread vulnerable")
        XCTAssertEqual(s.fields["untag_mask"], "0xffffffffffffffff")

        assertMalformed(try ProcStatusParser.parse(try fixture("status.bad"), source: "status.bad"), source: "status.bad", line: 5)
        assertMalformed(try ProcStatusParser.parse("Name:\tx\nbroken line\n", source: "st"), source: "st", line: 2)
        assertMalformed(try ProcStatusParser.parse("Name:\tx\nPid:\t1\nSigBlk:\t1ffffffffffffffff\n", source: "st"), source: "st", line: 3)
        assertMalformed(try ProcStatusParser.parse("Name:\tx\n", source: "st"), source: "st", line: 2)
    }

    func testMountinfoSampleUnescapes() throws {
        let m = try ProcMountInfoParser.parse(try fixture("mountinfo.sample"), source: "mi")
        XCTAssertEqual(m.count, 3)
        XCTAssertEqual(m[0].mountId, 36)
        XCTAssertEqual(m[0].parentId, 35)
        XCTAssertEqual(m[0].root, "/mnt1")
        XCTAssertEqual(m[0].mountPoint, "/mnt/with space")
        XCTAssertEqual(m[0].options, "rw,noatime")
        XCTAssertEqual(m[0].optionalFields, ["master:1"])
        XCTAssertEqual(m[0].masterGroup, 1)
        XCTAssertEqual(m[0].fsType, "ext3")
        XCTAssertEqual(m[0].source, "/dev/root")
        XCTAssertEqual(m[0].superOptions, "rw,errors=continue")
        XCTAssertEqual(m[0].devMajor, 98)
        XCTAssertEqual(m[1].optionalFields, [])
        XCTAssertNil(m[1].sharedGroup)
        XCTAssertEqual(m[2].root, "/a\\b")
        XCTAssertEqual(m[2].mountPoint, "/tab\tx")
        XCTAssertEqual(m[2].source, "my src")
        XCTAssertTrue(m[2].isReadOnly)
        XCTAssertEqual(m[2].sharedGroup, 7)
        XCTAssertEqual(m[2].propagateFrom, 3)
        XCTAssertTrue(m[2].isUnbindable)
        XCTAssertEqual(m[2].superOptionList, ["rw", "size=1024k"])
        assertMalformed(try ProcMountInfoParser.parse(try fixture("mountinfo.bad"), source: "mi.bad"), source: "mi.bad", line: 2)
        assertMalformed(try ProcMountInfoParser.parse("36 35 98:0 / /x rw\n", source: "mi"), source: "mi", line: 1)
        assertMalformed(try ProcMountInfoParser.parse("36 35 98:0 / /x rw - ext4\n", source: "mi"), source: "mi", line: 1)
    }

    func testFdinfoSamples() throws {
        let ep = try ProcFdInfoParser.parse(try fixture("fdinfo-epoll.sample"), source: "fdinfo")
        XCTAssertEqual(ep.pos, 0)
        XCTAssertEqual(ep.flags, 2)
        XCTAssertEqual(ep.mntId, 15)
        XCTAssertEqual(ep.ino, 1058)
        XCTAssertEqual(ep.epollTargets.map(\.tfd), [5, 6])
        XCTAssertEqual(ep.epollTargets[0].events, 0x19)
        XCTAssertEqual(ep.epollTargets[0].data, 7)
        XCTAssertEqual(ep.epollTargets[0].ino, 3)
        XCTAssertEqual(ep.epollTargets[0].sdev, 0xd)
        XCTAssertEqual(ep.values("tfd").count, 2)

        let ino = try ProcFdInfoParser.parse(try fixture("fdinfo-inotify.sample"), source: "fdinfo")
        XCTAssertEqual(ino.flags, 0o2004000)
        XCTAssertEqual(ino.inotifyWatches.count, 2)
        XCTAssertEqual(ino.inotifyWatches[0].wd, 2)
        XCTAssertEqual(ino.inotifyWatches[0].ino, 0xa2)
        XCTAssertEqual(ino.inotifyWatches[0].sdev, 0x800001)
        XCTAssertEqual(ino.inotifyWatches[0].mask, 0xfce)
        XCTAssertEqual(ino.inotifyWatches[0].fhandleType, 1)
        XCTAssertEqual(ino.inotifyWatches[0].fhandle, [0xa2, 0, 0, 0, 0x12, 0xfc, 0x3a, 0x4b])
        XCTAssertEqual(ino.inotifyWatches[1].mask, 0x800afce)
        XCTAssertEqual(ino.lines.last?.key, "inotify")

        let tfd = try XCTUnwrap(try ProcFdInfoParser.parse(try fixture("fdinfo-timerfd.sample"), source: "f").timerfd)
        XCTAssertEqual(tfd, .init(clockid: 1, ticks: 3, settimeFlags: 1, valueSec: 4, valueNsec: 999_999_999,
                                  intervalSec: 0, intervalNsec: 250_000_000))

        let ev = try ProcFdInfoParser.parse(try fixture("fdinfo-eventfd.sample"), source: "f")
        XCTAssertEqual(ev.eventfdCount, 0xffffffffffffffe)
        XCTAssertEqual(ev.eventfdId, 12)
        XCTAssertEqual(ev.eventfdSemaphore, true)
        XCTAssertEqual(ev.flags, O_NONBLOCK | O_RDWR)
        XCTAssertEqual(ev.locks, [ProcFileLock(kind: "FLOCK", mode: "ADVISORY", type: "WRITE", pid: 4242, devMajor: 0, devMinor: 0x10, inode: 2091,
                                               start: 0, end: nil, text: "1: FLOCK ADVISORY WRITE 4242 00:10:2091 0 EOF")])
        XCTAssertNil(ev.timerfd)

        let sig = try ProcFdInfoParser.parse(try fixture("fdinfo-signalfd.sample"), source: "f")
        XCTAssertEqual(sig.signalfdMask, 0x8000000000000202)

        assertMalformed(try ProcFdInfoParser.parse(try fixture("fdinfo.bad"), source: "fdinfo.bad"), source: "fdinfo.bad", line: 4)
        assertMalformed(try ProcFdInfoParser.parse("pos:\t0\nflags:\t09\n", source: "f"), source: "f", line: 2)
        assertMalformed(try ProcFdInfoParser.parse("pos:\t0\nit_value: (1 2)\n", source: "f"), source: "f", line: 2)
    }

    // MARK: real /proc of this process

    func testOwnMapsSmapsStatusStat() throws {
        let me = getpid()
        let maps = try proc.maps(pid: me)
        XCTAssertTrue(maps.contains { $0.isStack })
        XCTAssertTrue(maps.contains { $0.path == "[vdso]" })
        let exe = try proc.exe(pid: me)
        XCTAssertTrue(maps.contains { $0.path == exe && $0.executable }, "the test binary \(exe) is mapped executable")
        XCTAssertEqual(maps, maps.sorted { $0.start < $1.start })

        let smaps = try proc.smaps(pid: me)
        XCTAssertEqual(smaps.count, maps.count)
        XCTAssertGreaterThan(try XCTUnwrap(smaps.first { $0.mapping.isStack }).rss, 0)
        XCTAssertTrue(smaps.allSatisfy { !$0.vmFlags.isEmpty && $0.size == $0.mapping.size / 1024 })

        let status = try proc.status(pid: me)
        XCTAssertEqual(status.pid, me)
        XCTAssertEqual(status.tgid, me)
        XCTAssertEqual(status.ppid, getppid())
        XCTAssertEqual(status.uids, [UInt32](repeating: getuid(), count: 4))
        XCTAssertEqual(status.gids.first, getgid())
        XCTAssertEqual(status.nsPid.last, me)
        XCTAssertEqual(status.umask, { let u = umask(0o22); umask(u); return UInt32(u) }())
        XCTAssertGreaterThan(status.threads, 0)

        let st = try proc.stat(pid: me)
        XCTAssertEqual(st.pid, me)
        XCTAssertEqual(st.ppid, getppid())
        XCTAssertEqual(st.pgrp, getpgrp())
        XCTAssertEqual(st.session, getsid(0))
        XCTAssertEqual(st.comm, try proc.comm(pid: me))
        XCTAssertEqual(try proc.taskComm(pid: me, tid: me), st.comm)
        XCTAssertEqual(try proc.personality(pid: me) & 0xff, 0, "PER_LINUX")
        XCTAssertEqual(try proc.oomScoreAdj(pid: me), Int32(try proc.readText("/proc/\(me)/oom_score_adj").dropLast()))
        _ = try proc.loginuid(pid: me)
        XCTAssertEqual(st.comm, status.name)
        XCTAssertGreaterThan(st.startCode, 0)
        XCTAssertGreaterThan(st.envEnd, st.envStart)
        XCTAssertEqual(st.numThreads, Int64(status.threads))
    }

    func testOwnThreadsAndSignalMask() throws {
        let me = getpid(), tid = Self.gettid()
        let tasks = try proc.tasks(pid: me)
        XCTAssertTrue(tasks.contains(me))
        XCTAssertTrue(tasks.contains(tid))
        XCTAssertEqual(tasks, tasks.sorted())
        XCTAssertEqual(try proc.taskStat(pid: me, tid: tid).pid, tid)

        // Blocking a signal in this thread shows in its task status only.
        var set = sigset_t(), old = sigset_t()
        sigemptyset(&set); sigaddset(&set, SIGUSR2)
        pthread_sigmask(SIG_BLOCK, &set, &old)
        defer { pthread_sigmask(SIG_SETMASK, &old, nil) }
        let ts = try proc.taskStatus(pid: me, tid: tid)
        XCTAssertEqual(ts.pid, tid)
        XCTAssertEqual(ts.tgid, me)
        XCTAssertNotEqual(ts.sigBlk & (1 << (UInt64(SIGUSR2) - 1)), 0)
    }

    func testOwnFileFdinfo() throws {
        let me = getpid()
        let path = "/tmp/proc test \(me) file"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd); unlink(path) }
        _ = write(fd, "0123456789", 10)
        lseek(fd, 4, SEEK_SET)
        XCTAssertTrue(try proc.fds(pid: me).contains(fd))
        XCTAssertEqual(try proc.fds(pid: me), try proc.fds(pid: me).sorted())
        XCTAssertEqual(try proc.fdTarget(pid: me, fd: fd), path)
        let info = try proc.fdinfo(pid: me, fd: fd)
        XCTAssertEqual(info.pos, 4)
        XCTAssertEqual(info.flags & O_APPEND, O_APPEND)
        XCTAssertEqual(info.flags & O_ACCMODE, O_RDWR)
        var sb = stat()
        fstat(fd, &sb)
        XCTAssertEqual(info.ino, UInt64(sb.st_ino))
        XCTAssertTrue(try proc.mountinfo(pid: me).contains { $0.mountId == info.mntId }, "fd's mnt_id is in mountinfo")

        unlink(path)
        XCTAssertEqual(try proc.fdTarget(pid: me, fd: fd), path + " (deleted)")

        // A closed fd of a live process is an I/O error, not a vanished process.
        let spare = dup(fd); close(spare)
        XCTAssertThrowsError(try proc.fdinfo(pid: me, fd: spare)) { e in
            XCTAssertEqual(e as? ProcError, .io(path: "/proc/\(me)/fdinfo/\(spare)", errno: ENOENT))
        }
    }

    func testOwnEventEpollTimerSignalFds() throws {
        let me = getpid()
        let efd = eventfd(7, Int32(EFD_NONBLOCK))
        defer { close(efd) }
        let e = try proc.fdinfo(pid: me, fd: efd)
        XCTAssertEqual(e.eventfdCount, 7)
        XCTAssertEqual(e.flags & O_NONBLOCK, O_NONBLOCK)
        XCTAssertEqual(try proc.fdTarget(pid: me, fd: efd), "anon_inode:[eventfd]")

        let ep = epoll_create1(0)
        defer { close(ep) }
        var ev = epoll_event(events: EPOLLIN.rawValue | EPOLLET.rawValue, data: epoll_data_t(u64: 0x1234_5678_9abc))
        XCTAssertEqual(epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev), 0)
        let targets = try proc.fdinfo(pid: me, fd: ep).epollTargets
        XCTAssertEqual(targets.map(\.tfd), [efd])
        XCTAssertEqual(targets.first?.data, 0x1234_5678_9abc)
        // The kernel always adds EPOLLERR|EPOLLHUP to the registered events.
        XCTAssertEqual(targets.first?.events, EPOLLIN.rawValue | EPOLLET.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue)

        // timerfd_create(CLOCK_MONOTONIC), timerfd_settime with a 5 s value and 250 ms interval.
        let tfd = Int32(Self.sys(283, Int(CLOCK_MONOTONIC), 0))
        XCTAssertGreaterThanOrEqual(tfd, 0)
        defer { close(tfd) }
        var spec = itimerspec(it_interval: timespec(tv_sec: 0, tv_nsec: 250_000_000), it_value: timespec(tv_sec: 5, tv_nsec: 0))
        XCTAssertEqual(withUnsafePointer(to: &spec) { Self.sys(286, Int(tfd), 0, Int(bitPattern: $0), 0) }, 0)
        let t = try XCTUnwrap(try proc.fdinfo(pid: me, fd: tfd).timerfd)
        XCTAssertEqual(t.clockid, CLOCK_MONOTONIC)
        XCTAssertEqual(t.settimeFlags, 0)
        XCTAssertEqual(t.intervalSec, 0)
        XCTAssertEqual(t.intervalNsec, 250_000_000)
        XCTAssertLessThanOrEqual(t.valueSec, 5)
        XCTAssertGreaterThan(t.valueSec * 1_000_000_000 + t.valueNsec, 0)

        // signalfd4(-1, {SIGUSR1, SIGTERM}, 8, 0)
        var mask: UInt64 = 1 << (UInt64(SIGUSR1) - 1) | 1 << (UInt64(SIGTERM) - 1)
        let sfd = Int32(withUnsafePointer(to: &mask) { Self.sys(289, -1, Int(bitPattern: $0), 8, 0) })
        XCTAssertGreaterThanOrEqual(sfd, 0)
        defer { close(sfd) }
        XCTAssertEqual(try proc.fdinfo(pid: me, fd: sfd).signalfdMask, mask)

        let ifd = inotify_init1(0)
        defer { close(ifd) }
        let wd = inotify_add_watch(ifd, "/tmp", UInt32(IN_CREATE | IN_DELETE))
        XCTAssertGreaterThan(wd, 0)
        var sb = stat()
        stat("/tmp", &sb)
        let w = try XCTUnwrap(try proc.fdinfo(pid: me, fd: ifd).inotifyWatches.first)
        XCTAssertEqual(w.wd, wd)
        XCTAssertEqual(w.ino, UInt64(sb.st_ino))
        XCTAssertEqual(w.mask & UInt32(IN_CREATE | IN_DELETE), UInt32(IN_CREATE | IN_DELETE))
    }

    func testOwnMiscFiles() throws {
        let me = getpid()
        XCTAssertEqual(try proc.cwd(pid: me), FileManager.default.currentDirectoryPath)
        XCTAssertEqual(try proc.root(pid: me), "/")
        let cmd = try proc.cmdline(pid: me)
        XCTAssertEqual(cmd, CommandLine.arguments)
        XCTAssertFalse(try proc.environ(pid: me).isEmpty)
        XCTAssertEqual(try proc.auxv(pid: me).count % 2, 0)
        XCTAssertTrue(try proc.auxvEntries(pid: me).contains { $0.type == 6 && $0.value == UInt64(sysconf(Int32(_SC_PAGESIZE))) }, "AT_PAGESZ")
        var sb = stat()
        stat("/proc/self/ns/pid", &sb)
        XCTAssertEqual(try proc.namespaceInode(pid: me, kind: "pid"), UInt64(sb.st_ino))
        let mounts = try proc.mountinfo(pid: me)
        XCTAssertTrue(mounts.contains { $0.mountPoint == "/proc" && $0.fsType == "proc" })
    }

    func testChildrenAndGoneProcess() throws {
        let me = getpid(), tid = Self.gettid()
        var child: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/sleep"), strdup("30"), nil]
        defer { argv.forEach { free($0) } }
        XCTAssertEqual(posix_spawn(&child, "/bin/sleep", nil, nil, argv, environ), 0)
        var reaped = false
        defer { if !reaped { kill(child, SIGKILL); waitpid(child, nil, 0) } }
        XCTAssertTrue(try proc.children(pid: me, tid: tid).contains(child))
        XCTAssertTrue(try proc.allChildren(pid: me).contains(child))
        XCTAssertEqual(try proc.stat(pid: child).ppid, me)

        kill(child, SIGKILL)
        // A zombie still has /proc/PID: stat says Z, exe is an I/O error rather than "gone".
        var zombie = false
        for _ in 0..<200 where !zombie { zombie = (try? proc.stat(pid: child).isZombie) == true; if !zombie { usleep(5000) } }
        XCTAssertTrue(zombie)
        XCTAssertThrowsError(try proc.exe(pid: child)) { e in
            guard case ProcError.io = e else { return XCTFail("\(e)") }
        }
        waitpid(child, nil, 0)
        reaped = true
        XCTAssertFalse(proc.exists(pid: child))
        XCTAssertThrowsError(try proc.stat(pid: child)) { XCTAssertEqual($0 as? ProcError, .gone(pid: child)) }
        XCTAssertThrowsError(try proc.maps(pid: child)) { XCTAssertEqual($0 as? ProcError, .gone(pid: child)) }
        XCTAssertThrowsError(try proc.tasks(pid: child)) { XCTAssertEqual($0 as? ProcError, .gone(pid: child)) }
        XCTAssertThrowsError(try proc.fdTarget(pid: child, fd: 0)) { XCTAssertEqual($0 as? ProcError, .gone(pid: child)) }
        XCTAssertThrowsError(try proc.taskStatus(pid: me, tid: child)) { XCTAssertEqual($0 as? ProcError, .gone(pid: child)) }
    }

    func testManyMappingsParseFast() throws {
        var text = ""
        text.reserveCapacity(10_000 * 100)
        for i in 0..<10_000 {
            let s = 0x7f00_0000_0000 + UInt64(i) * 0x2000
            text += "\(String(s, radix: 16))-\(String(s + 0x1000, radix: 16)) r-xp 00001000 fe:01 1234567"
            text += i % 2 == 0 ? "                    /usr/lib/x86_64-linux-gnu/libc.so.6\n" : " \n"
        }
        let bytes = Array(text.utf8)
        let t0 = DispatchTime.now().uptimeNanoseconds
        let m = try ProcMapsParser.parse(bytes, source: "big")
        let ms = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
        XCTAssertEqual(m.count, 10_000)
        XCTAssertEqual(m[9_998].path, "/usr/lib/x86_64-linux-gnu/libc.so.6")
        // Generous for debug builds; release is a few ms.
        XCTAssertLessThan(ms, 250, "10k mappings took \(ms) ms")
    }
}
