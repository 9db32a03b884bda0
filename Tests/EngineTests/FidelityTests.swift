import XCTest
import Glibc
@testable import Engine

/// Parsers and checks behind the fidelity fixes: /proc/PID/limits, the VMA flags refused at
/// dump, terminals by device number, inet_diag replies.
final class FidelityTests: XCTestCase {
    func testProcLimits() throws {
        let text = """
            Limit                     Soft Limit           Hard Limit           Units     
            Max cpu time              unlimited            unlimited            seconds   
            Max file size             unlimited            unlimited            bytes     
            Max data size             unlimited            unlimited            bytes     
            Max stack size            8388608              unlimited            bytes     
            Max core file size        0                    unlimited            bytes     
            Max resident set          unlimited            unlimited            bytes     
            Max processes             63455                63455                processes 
            Max open files            512                  2048                 files     
            Max locked memory         8388608              8388608              bytes     
            Max address space         unlimited            unlimited            bytes     
            Max file locks            unlimited            unlimited            locks     
            Max pending signals       63455                63455                signals   
            Max msgqueue size         819200               819200               bytes     
            Max nice priority         0                    0                    
            Max realtime priority     0                    0                    
            Max realtime timeout      unlimited            unlimited            us        

            """
        let l = try ProcLimitsParser.parse(text, path: "limits")
        XCTAssertEqual(l.count, 16)
        XCTAssertEqual(l[0].cur, UInt64.max)
        XCTAssertEqual(l[3].cur, 8388608); XCTAssertEqual(l[3].max, UInt64.max)
        XCTAssertEqual(l[7].cur, 512); XCTAssertEqual(l[7].max, 2048)
        XCTAssertEqual(l[13].cur, 0)
        XCTAssertEqual(l[15].max, UInt64.max)
        // A missing resource or a bad number is an error naming the file, never a guess.
        XCTAssertThrowsError(try ProcLimitsParser.parse(text.replacingOccurrences(of: "Max open files", with: "Max open filez"), path: "limits"))
        XCTAssertThrowsError(try ProcLimitsParser.parse(text.replacingOccurrences(of: "63455                63455                signals", with: "lots                 63455                signals"), path: "limits"))
        // And this process's own file reads back what getrlimit says.
        let mine = try ProcReader().limits(pid: getpid())
        var r = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &r)
        XCTAssertEqual(mine[7].cur, UInt64(r.rlim_cur))
    }

    func smaps(_ path: String, _ flags: [String]) -> ProcSmapsEntry {
        ProcSmapsEntry(mapping: ProcMapping(start: 0x1000, end: 0x2000, readable: true, writable: true, executable: false, shared: false,
                                            offset: 0, devMajor: 0, devMinor: 0, inode: 0, path: path), vmFlags: flags)
    }

    func testVmaFlagsRefused() {
        XCTAssertNoThrow(try VmaFlags.refuseUnkept([smaps("", ["rd", "wr", "mr", "mw", "me", "ac"]), smaps("[vvar]", ["rd", "mr", "pf", "io", "de", "dd"])], pid: 1))
        // MAP_DROPPABLE (dp) is kept as the mapping type (droppable00), not refused.
        for f in ["lf", "sl"] {
            XCTAssertThrowsError(try VmaFlags.refuseUnkept([smaps("", ["rd", "wr", f])], pid: 7), f) { e in
                XCTAssertTrue("\(e)".contains("0x1000-0x2000"), "\(e)")
            }
        }
        // madvise flags are carried (madv bits, 1 << MADV_*), and mlock (MAP_LOCKED), not refused.
        XCTAssertNoThrow(try VmaFlags.refuseUnkept([smaps("", ["rd", "wr", "dc", "wf", "dd", "mg", "hg", "nh", "lo", "sr", "rr", "dp"])], pid: 1))
        let bits = VmaFlags.madvBits([smaps("", ["rd", "dc", "nh"]), smaps("[vdso]", ["rd", "dd"]), smaps("/x", ["rd"])])
        XCTAssertEqual(bits, [0x1000: (1 << 10) | (1 << 15)])
        XCTAssertEqual(VmaFlags.advice((1 << 10) | (1 << 15)), [10, 15])
        // cryo's own dirty tracking (userfaultfd write-protect) is not the task's.
        XCTAssertNoThrow(try VmaFlags.refuseUnkept([smaps("", ["rd", "wr", "uw"])], pid: 1))
    }

    func testTerminalsByDevice() {
        func st(_ mode: UInt32, _ major: UInt64, _ minor: UInt64) -> stat {
            var s = stat()
            s.st_mode = mode
            s.st_rdev = UInt((major << 8) | minor)
            return s
        }
        XCTAssertEqual(FdChecks.terminal(st(S_IFCHR, 5, 2)), .ptyMaster)
        XCTAssertEqual(FdChecks.terminal(st(S_IFCHR, 136, 3)), .ptySlave)
        XCTAssertEqual(FdChecks.terminal(st(S_IFCHR, 5, 0)), .other)
        XCTAssertEqual(FdChecks.terminal(st(S_IFCHR, 4, 64)), .other)
        XCTAssertNil(FdChecks.terminal(st(S_IFCHR, 1, 3)))  // /dev/null
        XCTAssertNil(FdChecks.terminal(st(S_IFREG, 136, 3)))
    }

    func testInetDiagReply() throws {
        // One inet_diag_msg for inode 4242 with INET_DIAG_SHUTDOWN = 3, then NLMSG_DONE.
        var msg: [UInt8] = []
        msg.putU32(16 + 72 + 8); msg += [20, 0, 2, 0]; msg.putU32(1); msg.putU32(0)
        var body = [UInt8](repeating: 0, count: 72)
        body[0] = 2; body[1] = 7
        body[68] = 0x92; body[69] = 0x10  // 4242
        msg += body
        msg += [5, 0, 8, 0, 3, 0, 0, 0]
        var done: [UInt8] = []
        done.putU32(20); done += [3, 0, 2, 0]; done.putU32(1); done.putU32(0); done.putU32(0)
        let (socks, finished) = try SockDiag.parseInet(msg + done)
        XCTAssertTrue(finished)
        XCTAssertEqual(socks, [InetDiag(state: 7, ino: 4242, shutdown: 3)])
        XCTAssertThrowsError(try SockDiag.parseInet(Array(msg.prefix(40)) + [UInt8](repeating: 0, count: 0)))
    }
}
